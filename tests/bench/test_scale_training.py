"""The training-scale bench: its generated corpus, its memory measurement and its table (no training here)."""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image

from arcsearch.index.corpus import read_image_folder
from bench.scale_training import PER_CLASS, generate_corpus, markdown, run_measured, train_command


def test_the_generated_corpus_has_classes_of_distinct_images(tmp_path: Path) -> None:
    items = read_image_folder(generate_corpus(tmp_path / "corpus", PER_CLASS + 30, processes=1))
    assert len(items) == PER_CLASS + 30 and len({item.label for item in items}) == 2
    first, second = (Image.open(items[i].path).tobytes() for i in (0, 1))
    assert first != second and Image.open(items[0].path).size == (48, 48)


def test_peak_memory_is_measured_over_the_process_tree() -> None:
    grow = "import time; block = bytearray(300 * 2**20); block[::4096] = b'x' * len(block[::4096]); time.sleep(1)"
    small = run_measured([sys.executable, "-c", "import time; time.sleep(1)"], interval_s=0.05)
    big = run_measured([sys.executable, "-c", grow], interval_s=0.05)
    assert small["returncode"] == big["returncode"] == 0
    assert big["max_rss_mib"] - small["max_rss_mib"] > 250
    assert big["peak_tree_pss_mib"] - small["peak_tree_pss_mib"] > 250


def test_the_table_and_the_training_command() -> None:
    rows = [{"images": 20_000, "workers": w, "steps": 10, "samples_per_s": 50.4, "max_rss_mib": 900.2,
             "peak_tree_pss_mib": 1200.0} for w in (0, 2)]
    table = markdown(rows).splitlines()
    assert len(table) == 4 and table[3] == "| 20,000 | 2 | 10 | 50 | 900 | 1200 |"
    command = train_command(Path("c"), Path("o"), workers=2, seconds=5, batch_size=32)
    assert command[1:4] == ["-m", "arcsearch", "train"] and command[command.index("--workers") + 1] == "2"
