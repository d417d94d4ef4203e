"""Text training end to end on 40 WordNet hypernym classes with a one-layer MiniLM (fast on 2 CPU cores)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from arcsearch.index.bundle import read_embedder_manifest
from arcsearch.index.corpus import read_text_file
from arcsearch.index.embedder import load_embedder
from arcsearch.training import run
from arcsearch.training.config import TextTrainConfig
from arcsearch.training.evaluation.baselines import tfidf_embeddings
from arcsearch.training.evaluation.exported import evaluate_bundle
from arcsearch.training.evaluation.metrics import retrieval_metrics
from arcsearch.training.evaluation.scoring import embed_texts
from arcsearch.training.export import export_text_embedder
from arcsearch.training.fitting.text import fit_text_encoder, load_sentence_model
from arcsearch.training.run import report_path, train_texts

FED: dict[str, list[str]] = {}  # what the module's run fed the training loop: "train" and "validation" texts


@pytest.fixture(scope="module")
def trained(glosses_subset: Path, tiny_text_model: Path,
            tmp_path_factory: pytest.TempPathFactory) -> tuple[TextTrainConfig, dict]:
    config = TextTrainConfig(texts_file=glosses_subset, out_dir=tmp_path_factory.mktemp("text_run") / "text",
                             model=str(tiny_text_model), epochs=2, batch_size=32, holdout_fraction=0.3,
                             validation_fraction=0.15, device="cpu", show_progress=False)

    def recording_fit(model: Any, texts: list[str], codes: np.ndarray, **kwargs: Any) -> Any:
        FED["train"], FED["validation"] = list(texts), list(kwargs["validation"][0])
        return fit_text_encoder(model, texts, codes, **kwargs)

    with pytest.MonkeyPatch.context() as patch:  # a spy that trains for real, to see which texts were trained on
        patch.setattr(run, "fit_text_encoder", recording_fit)
        return config, train_texts(config)


def test_text_training_runs_through_reports_and_exports(trained: tuple[TextTrainConfig, dict]) -> None:
    config, report = trained
    assert set(report["methods"]) == {"tfidf", "pretrained_model", "arcface_finetuned"}
    for method in report["methods"].values():
        assert 0.0 <= method["map_at_r"] <= method["r_precision"] + 1e-9 <= 1.0 + 1e-9
    assert len(report["fit"]["epoch_losses"]) == 2 and report["methods"]["arcface_finetuned"]["train_seconds"] > 0
    assert len(report["heldout_classes"]) == 12 and not set(report["heldout_classes"]) & set(report["train_classes"])
    assert report_path(config.out_dir).is_file()
    manifest = read_embedder_manifest(config.out_dir)
    assert manifest.modality == "text" and manifest.embedding_dim == 384
    assert manifest.training["heldout_classes"] == report["heldout_classes"]


def test_closed_set_items_are_never_trained_on_nor_validated_and_are_scored(
        trained: tuple[TextTrainConfig, dict]) -> None:
    config, report = trained
    closed = report["closed_set"]
    by_id = {it.item_id: it for it in read_text_file(config.texts_file)}
    items = [by_id[item_id] for item_id in closed["item_ids"]]
    assert {it.label for it in items} == set(report["train_classes"])  # every training class gives items
    assert set(FED["train"]) and not {it.text for it in items} & (set(FED["train"]) | set(FED["validation"]))
    in_train_classes = [it for it in by_id.values() if it.label in set(report["train_classes"])]
    assert len(FED["train"]) + len(items) == len(in_train_classes)  # only the closed set was taken out
    assert closed["num_items"] == len(items) == pytest.approx(0.2 * len(in_train_classes), abs=len(items) * 0.1)
    assert set(closed["methods"]) == {"tfidf", "pretrained_model", "arcface_finetuned"}
    vectors = tfidf_embeddings([it.text for it in items], fit_texts=[it.text for it in by_id.values()])
    assert closed["methods"]["tfidf"] == pytest.approx(retrieval_metrics(vectors, [it.label for it in items]))
    assert json.loads(report_path(config.out_dir).read_text())["closed_set"] == closed


def test_evaluate_bundle_reproduces_the_reported_numbers(trained: tuple[TextTrainConfig, dict]) -> None:
    config, report = trained
    result = evaluate_bundle(config.out_dir, config.texts_file, only_classes=report["heldout_classes"])
    for name in ("precision_at_1", "r_precision", "map_at_r"):
        assert result[name] == pytest.approx(report["methods"]["arcface_finetuned"][name], abs=1e-4)


def test_tfidf_baseline_matches_a_direct_computation(trained: tuple[TextTrainConfig, dict]) -> None:
    config, report = trained
    items = read_text_file(config.texts_file)
    held = [it for it in items if it.label in set(report["heldout_classes"])]
    vectors = tfidf_embeddings([it.text for it in held], fit_texts=[it.text for it in items])
    assert retrieval_metrics(vectors, [it.label for it in held])["map_at_r"] == pytest.approx(
        report["methods"]["tfidf"]["map_at_r"])


def test_exported_text_bundle_gives_the_in_memory_vectors(glosses_subset: Path, tiny_text_model: Path,
                                                          tmp_path: Path) -> None:
    items = read_text_file(glosses_subset)[:64]
    texts = [it.text for it in items]
    codes = np.unique([it.label for it in items], return_inverse=True)[1].reshape(-1)
    config = TextTrainConfig(texts_file=glosses_subset, out_dir=tmp_path / "bundle", model=str(tiny_text_model),
                             epochs=1, batch_size=16, device="cpu", show_progress=False)
    model = load_sentence_model(config.model, device=torch.device("cpu"))
    before = embed_texts(model, texts)
    fit_text_encoder(model, texts, codes, config=config, device=torch.device("cpu"))
    in_memory = embed_texts(model, texts)
    assert not np.allclose(before, in_memory, atol=1e-4), "one epoch of fine-tuning should move the vectors"
    export_text_embedder(model, config.out_dir, backbone=config.model)
    reloaded = load_embedder(config.out_dir, device="cpu").embed_texts(texts)
    np.testing.assert_allclose(reloaded, in_memory, atol=1e-5)


def test_subcenter_run_lists_planted_wrong_labels_first(glosses_subset: Path, tiny_text_model: Path,
                                                        tmp_path: Path) -> None:
    """Relabel 8 texts of one class as another class; sub-center ArcFace should rank them far from the
    dominant sub-centre of the class they were given. The texts come as a Parquet manifest (text, label,
    id and a metadata column), which trains as a JSONL file does."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [json.loads(line) for line in glosses_subset.read_text().splitlines()]
    classes = sorted({row["label"] for row in rows})
    planted = [row for row in rows if row["label"] == classes[0]][:8]
    for row in planted:
        row["label"] = classes[1]
    noisy = tmp_path / "noisy.parquet"
    pq.write_table(pa.Table.from_pylist([{**row, "source": "wordnet"} for row in rows]), noisy)
    config = TextTrainConfig(texts_file=noisy, out_dir=tmp_path / "subcenter", model=str(tiny_text_model),
                             objective="subcenter_arcface", epochs=2, batch_size=32, holdout_fraction=0.0,
                             validation_fraction=0.0, closed_set_fraction=0.0, device="cpu",
                             show_progress=False)  # every item trained on
    flagged = train_texts(config, export=False)["likely_mislabelled"]
    angles = [row["angle_to_dominant_deg"] for row in flagged]
    assert angles == sorted(angles, reverse=True)
    assert all(row["past_threshold"] == (row["angle_to_dominant_deg"] > 75.0) for row in flagged)
    top_tenth = {row["id"] for row in flagged[:len(rows) // 10]}
    caught = top_tenth & {row["id"] for row in planted}
    # by chance about 1 of the 8 would land in the farthest tenth
    assert len(caught) >= 6, f"only {len(caught)} of {len(planted)} planted labels in the farthest tenth"
