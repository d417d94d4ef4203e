"""Small real data sets for the training tests, cut from the prepared default data.

The data come from the session fixture ``prepared`` (tests/conftest.py), which calls
``arcsearch.prepare.defaults.prepare_all`` on ``Path(os.environ.get("ARCSEARCH_TEST_DATA", <repo>/.cache/test-data))``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from arcsearch.index.corpus import read_text_file
from arcsearch.prepare.defaults import PreparedData

NUM_FACE_PEOPLE = 12
NUM_TEXT_CLASSES = 40


@pytest.fixture(scope="session")
def faces_subset(prepared: PreparedData, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``<tmp>/faces/s1..s12/*.pgm``: the first 12 ORL people, 10 images each."""
    root = tmp_path_factory.mktemp("faces_subset") / "faces"
    people = sorted(p for p in prepared.faces_dir.iterdir() if p.is_dir())[:NUM_FACE_PEOPLE]
    for person in people:
        shutil.copytree(person, root / person.name)
    return root


@pytest.fixture(scope="session")
def glosses_subset(prepared: PreparedData, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A JSONL file with the glosses of the first 40 hypernym classes of the WordNet file."""
    items = read_text_file(prepared.texts_file)
    classes = sorted({item.label for item in items})[:NUM_TEXT_CLASSES]
    path = tmp_path_factory.mktemp("glosses_subset") / "glosses.jsonl"
    rows = [{"id": it.item_id, "text": it.text, "label": it.label} for it in items if it.label in set(classes)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_text_model(prepared: PreparedData, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-layer sentence-transformers folder cut from all-MiniLM-L6-v2 (fast; no download)."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(prepared.minilm_dir), device="cpu", local_files_only=True)
    transformer = model[0].auto_model
    transformer.encoder.layer = transformer.encoder.layer[:1]
    transformer.config.num_hidden_layers = 1
    model.max_seq_length = 64
    folder = tmp_path_factory.mktemp("tiny_text_model") / "model"
    model.save(str(folder))
    return folder
