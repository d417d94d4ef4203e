"""``arcsearch demo``: the whole path on the default data, from nothing to a running service."""

from __future__ import annotations

import json
import logging
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from arcsearch.training.evaluation.scoring import format_table

logger = logging.getLogger(__name__)


def _train_or_reuse(kind: str, out_dir: Path, train: Any) -> dict[str, Any]:
    """Train unless a bundle of the current format with its report already exists (delete the folder to
    train again); a bundle of an older format (e.g. a format-1 image bundle, no longer loaded) is retrained."""
    from arcsearch.index.bundle import EMBEDDER_FORMAT_VERSION, read_embedder_manifest
    from arcsearch.training.run import report_path

    if (out_dir / "manifest.json").exists() and report_path(out_dir).exists():
        if read_embedder_manifest(out_dir).format_version == EMBEDDER_FORMAT_VERSION:
            logger.info("reusing the %s embedder in %s (delete it to train again)", kind, out_dir)
            return json.loads(report_path(out_dir).read_text(encoding="utf-8"))
        logger.info("the %s embedder in %s has an older bundle format; training it again", kind, out_dir)
    return train()


def _forget_collection_of_other_embedder(collections_dir: Path, name: str, embedder: Path) -> None:
    """The demo owns its collections: one built with an earlier embedder is removed, not refused."""
    from arcsearch.index.bundle import read_embedder_manifest
    from arcsearch.index.collections import collection_dir, embedder_dir

    folder = collection_dir(collections_dir, name)
    if not folder.exists():
        return
    old = read_embedder_manifest(embedder_dir(collections_dir, name)).weights_sha256
    if old != read_embedder_manifest(embedder).weights_sha256:
        logger.info("collection %s was built with an earlier embedder; rebuilding it", name)
        shutil.rmtree(folder)


def example_requests(host: str, port: int, *, image_path: Path) -> str:
    """Ready-to-paste curl commands against the running service."""
    base = f"http://{host}:{port}"
    return "\n".join([
        f"  open {base}/docs for the OpenAPI page",
        f"  curl -s -F file=@{image_path} -F k=5 {base}/v1/collections/images/search",
        f"  curl -s -H 'content-type: application/json' "
        f"-d '{{\"text\": \"a large dog used for hunting\", \"k\": 5}}' {base}/v1/collections/texts/search",
        f"  curl -s -H 'content-type: application/json' "
        f"-d '{{\"collection\": \"texts\", \"source\": \"wordnet_glosses.jsonl\"}}' {base}/v1/reindex",
        f"  curl -s {base}/v1/jobs/<job_id>",
        f"  curl -s {base}/v1/collections",
    ])


def run_demo(*, data_dir: Path, artifacts_dir: Path, host: str, port: int, device: str, serve: bool) -> int:
    """Prepare, train, evaluate, export, index, then serve (unless ``serve`` is False)."""
    from arcsearch.index.collections import index_collection
    from arcsearch.prepare.defaults import prepare_all
    from arcsearch.training.config import ImageTrainConfig, TextTrainConfig
    from arcsearch.training.run import train_images, train_texts

    started = time.perf_counter()
    prepared = prepare_all(data_dir)
    image_out, text_out = artifacts_dir / "image_embedder", artifacts_dir / "text_embedder"
    image_report = _train_or_reuse("image", image_out, lambda: train_images(ImageTrainConfig(
        images_dir=prepared.faces_dir, out_dir=image_out, checkpoint=prepared.mobilenet_weights, device=device)))
    text_report = _train_or_reuse("text", text_out, lambda: train_texts(TextTrainConfig(
        texts_file=prepared.texts_file, out_dir=text_out, model=str(prepared.minilm_dir), device=device)))
    collections_dir = artifacts_dir / "collections"
    for name, embedder, source in (("images", image_out, prepared.faces_dir),
                                   ("texts", text_out, prepared.texts_file)):
        _forget_collection_of_other_embedder(collections_dir, name, embedder)
        index_collection(collections_dir, name, embedder, source, device=device)
    elapsed_s = time.perf_counter() - started

    sample_image = sorted(prepared.faces_dir.glob("*/*.pgm"))[-1]
    sys.stdout.write(
        f"\nHeld-out faces (ORL):\n{format_table(image_report['methods'])}\n"
        f"\nHeld-out texts (WordNet glosses by hypernym):\n{format_table(text_report['methods'])}\n"
        f"\nPrepared, trained, evaluated, exported and indexed in {elapsed_s:.0f} s.\n")
    if not serve:
        return 0
    sys.stdout.write(f"Serving on http://{host}:{port} — try:\n"
                     f"{example_requests(host, port, image_path=sample_image)}\n\n")
    sys.stdout.flush()
    from arcsearch.service.server import serve as run_server
    from arcsearch.service.settings import Settings

    run_server(Settings(host=host, port=port, collections_dir=collections_dir,
                        data_root=data_dir.resolve(), device=device))
    return 0
