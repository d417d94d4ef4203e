"""The text policy a text run exports: --max-seq-length, --long-texts truncate|chunk|auto (chosen on validation)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch

from arcsearch.index.bundle import TextPreprocessing, read_embedder_manifest
from arcsearch.index.embedder import load_embedder
from arcsearch.training.config import ConfigError, TextTrainConfig
from arcsearch.training.evaluation.exported import evaluate_bundle
from arcsearch.training.export import export_text_embedder
from arcsearch.training.fitting.text import load_sentence_model
from arcsearch.training.fitting.text_policy import choose_long_texts, embed_with_policy, resolve_text_policy
from arcsearch.training.run import train_texts

WINDOW = 32


@pytest.fixture(scope="module")
def long_documents(prepared, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """JSONL of 12 lexicographer files x 8 documents, each 5 real glosses of its class (about 60 tokens)."""
    rows = [json.loads(line) for line in prepared.lexfiles_file.read_text(encoding="utf-8").splitlines()]
    labels = sorted({row["label"] for row in rows})[:12]
    docs = []
    for label in labels:
        glosses = [row["text"] for row in rows if row["label"] == label]
        docs += [{"id": f"{label}-{i}", "label": label, "text": " ".join(glosses[5 * i:5 * i + 5])} for i in range(8)]
    path = tmp_path_factory.mktemp("long_docs") / "docs.jsonl"
    path.write_text("".join(json.dumps(doc) + "\n" for doc in docs), encoding="utf-8")
    return path


def fake_embed(winner: str) -> tuple[list[str], list[str], object]:
    """Texts, labels and an embed function under which ``winner``'s vectors are the class one-hots, the other
    policy's random."""
    labels = [f"c{i % 3}" for i in range(12)]

    def embed(texts: Sequence[str], policy: TextPreprocessing) -> np.ndarray:
        if policy.long_texts == winner:
            return np.eye(3, dtype=np.float32)[[int(label[1]) for label in labels]]
        vectors = np.random.default_rng(0).normal(size=(len(texts), 3)).astype(np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return [f"text {i}" for i in range(12)], labels, embed


@pytest.mark.parametrize("winner", ["truncate", "chunk"])
def test_the_chooser_keeps_the_policy_with_the_better_validation_map(winner: str) -> None:
    texts, labels, embed = fake_embed(winner)
    policy, scores = choose_long_texts(texts, labels, embed, max_seq_length=48)  # type: ignore[arg-type]
    assert policy == TextPreprocessing(max_seq_length=48, long_texts=winner)
    loser = "chunk" if winner == "truncate" else "truncate"
    assert scores["map_at_r"][winner] == pytest.approx(1.0) and scores["map_at_r"][loser] < 0.9


def test_a_tie_keeps_truncate() -> None:
    def same(texts: Sequence[str], policy: TextPreprocessing) -> np.ndarray:
        return np.eye(2, dtype=np.float32)[[i % 2 for i in range(len(texts))]]
    policy, _ = choose_long_texts([f"t{i}" for i in range(6)], ["a", "b"] * 3, same, max_seq_length=48)
    assert policy.long_texts == "truncate"


def test_auto_without_validation_or_long_texts_keeps_truncate(tiny_text_model: Path) -> None:
    model = load_sentence_model(str(tiny_text_model), device=torch.device("cpu"), max_seq_length=WINDOW)
    policy, how = resolve_text_policy(model, "auto", None)
    assert policy == TextPreprocessing(max_seq_length=WINDOW) and how["chosen_by"] == "no validation data"
    policy, how = resolve_text_policy(model, "auto", (["a dog", "a cat", "a car"], ["x", "x", "y"]))
    assert policy.long_texts == "truncate" and how["chosen_by"] == "no long validation text"


def test_in_training_vectors_are_the_exported_bundles_under_chunk(tiny_text_model: Path, long_documents: Path,
                                                                  tmp_path: Path) -> None:
    texts = [json.loads(line)["text"] for line in long_documents.read_text().splitlines()[:10]]
    model = load_sentence_model(str(tiny_text_model), device=torch.device("cpu"), max_seq_length=WINDOW)
    policy = TextPreprocessing(max_seq_length=WINDOW, long_texts="chunk")
    in_memory = embed_with_policy(model, texts, policy)
    bundle = export_text_embedder(model, tmp_path / "bundle", backbone="tiny", text_policy=policy)
    np.testing.assert_allclose(load_embedder(bundle, device="cpu").embed_texts(texts), in_memory, atol=1e-5)
    assert not np.allclose(embed_with_policy(model, texts, TextPreprocessing(max_seq_length=WINDOW)), in_memory,
                           atol=1e-3)  # these texts are longer than the window


def test_a_run_with_auto_exports_the_policy_it_chose_on_validation(tiny_text_model: Path, long_documents: Path,
                                                                   tmp_path: Path) -> None:
    config = TextTrainConfig(texts_file=long_documents, out_dir=tmp_path / "text", model=str(tiny_text_model),
                             epochs=1, batch_size=16, holdout_fraction=0.3, validation_fraction=0.4,
                             max_seq_length=WINDOW, long_texts="auto", device="cpu", show_progress=False)
    report = train_texts(config, baselines=False)
    how = report["text_policy"]
    assert how["chosen_by"] == "validation MAP@R" and how["longer_than_window"] > 0
    scores = how["map_at_r"]
    assert how["long_texts"] == ("chunk" if scores["chunk"] > scores["truncate"] else "truncate")
    manifest = read_embedder_manifest(config.out_dir)
    assert manifest.text is not None and manifest.text.max_seq_length == WINDOW
    assert manifest.text.long_texts == how["long_texts"]
    again = evaluate_bundle(config.out_dir, config.texts_file, only_classes=report["heldout_classes"])
    assert again["map_at_r"] == pytest.approx(report["methods"]["arcface_finetuned"]["map_at_r"], abs=1e-4)


def test_the_flags_reach_the_config_and_bad_values_are_refused(tmp_path: Path) -> None:
    from arcsearch.cli import build_parser
    from arcsearch.commands import training_config

    args = build_parser().parse_args(["train", "--texts", str(tmp_path / "t.jsonl"), "--model", "m", "--out",
                                      str(tmp_path / "o"), "--max-seq-length", "64", "--long-texts", "auto"])
    config, _ = training_config(args)
    assert (config.max_seq_length, config.long_texts) == (64, "auto")
    with pytest.raises(ConfigError, match="long_texts"):
        TextTrainConfig(texts_file=tmp_path, out_dir=tmp_path, long_texts="average")
