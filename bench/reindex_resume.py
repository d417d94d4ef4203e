"""A re-index killed midway and started again: the same index as an uninterrupted run, and the time the kill cost.

Generates ``--items`` texts, then runs ``arcsearch index`` three times as real processes: once uninterrupted;
once SIGKILLed when about ``--kill-fraction`` of the shards are finished; once more on the same collections
folder, which resumes from the finished shards. Prints each run's seconds, whether the resumed index equals
the uninterrupted one (same ids in the same order, same vectors: the largest absolute difference), and the
time lost to the kill: (killed run + resumed run) - uninterrupted run, which includes one more process start.

Usage (an embedder bundle of yours, or ``--make-embedder DIR`` for the untrained test text embedder built from
``make prepare``'s data, as tests/bundles.py builds it):
    .venv/bin/python -m bench.reindex_resume --embedder artifacts/embedders/texts --items 200000
    .venv/bin/python -m bench.reindex_resume --make-embedder /tmp/bench-embedders --items 5000 --shard-items 512
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from arcsearch.index.collections import current_index_dir
from arcsearch.index.store import IndexStore

logger = logging.getLogger(__name__)
SYLLABLES = ("ka", "lo", "mi", "ren", "tu", "sa", "vor", "el", "qui", "dan", "po", "ri", "zen", "ha", "ul", "by")
NAME = "texts"


def generated_texts(count: int, *, seed: int = 0) -> list[dict[str, str]]:
    """``count`` rows ``{"id", "text"}`` of 6-14 made-up words each, the same for the same seed; no labels."""
    rng = random.Random(seed)
    words = ["".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 3))) for _ in range(5000)]
    return [{"id": f"g{i}", "text": " ".join(rng.choice(words) for _ in range(rng.randint(6, 14)))}
            for i in range(count)]


def index_command(args: argparse.Namespace, embedder: Path, source: Path, root: Path) -> list[str]:
    return [sys.executable, "-m", "arcsearch", "index", "--collection", NAME, "--embedder", str(embedder),
            "--source", str(source), "--collections-dir", str(root), "--device", args.device, "--batch-size",
            str(args.batch_size), "--shard-items", str(args.shard_items), "--workers", str(args.workers)]


def timed_run(command: list[str], log: Path, *, kill_at_shards: int | None = None, shards: Path | None = None
              ) -> tuple[float, int]:
    """Run ``command`` (output to ``log``); with ``kill_at_shards``, SIGKILL it once that many shard files are
    under ``shards``. Returns (seconds, exit status)."""
    started = time.perf_counter()
    with log.open("a") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        if kill_at_shards is not None and shards is not None:
            while proc.poll() is None and len(list(shards.glob("*/shard-*.json"))) < kill_at_shards:
                time.sleep(0.05)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
        status = proc.wait()
    return time.perf_counter() - started, status


def stored(root: Path) -> tuple[np.ndarray, list[str]]:
    store = IndexStore.load(current_index_dir(root, NAME))
    return store.index.reconstruct_n(0, store.index.ntotal), [r.external_id for r in store.items.iter_records()]


def embedder_folder(args: argparse.Namespace) -> Path:
    if args.embedder is not None:
        return args.embedder
    from tests import bundles

    return bundles.text_embedder(args.make_embedder)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    given = parser.add_mutually_exclusive_group(required=True)
    given.add_argument("--embedder", type=Path, help="a text embedder bundle")
    given.add_argument("--make-embedder", type=Path, help="build the untrained test text embedder in this folder")
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--shard-items", type=int, default=4096)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--kill-fraction", type=float, default=0.5, help="of the shards finished at the kill")
    parser.add_argument("--work-dir", type=Path, default=None, help="default: a temporary folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    embedder = embedder_folder(args)
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="reindex-resume-"))
    work.mkdir(parents=True, exist_ok=True)
    source = work / "texts.jsonl"
    source.write_text("".join(json.dumps(row) + "\n" for row in generated_texts(args.items)), encoding="utf-8")
    log, whole, killed = work / "runs.log", work / "uninterrupted", work / "killed"
    shard_items = -(-args.shard_items // args.batch_size) * args.batch_size
    num_shards = -(-args.items // shard_items)
    kill_at = max(1, round(num_shards * args.kill_fraction))
    logger.info("%d texts, %d shards; logs in %s", args.items, num_shards, log)

    full_s, status = timed_run(index_command(args, embedder, source, whole), log)
    assert status == 0, f"the uninterrupted run failed; see {log}"
    kill_s, _ = timed_run(index_command(args, embedder, source, killed), log, kill_at_shards=kill_at,
                          shards=killed / NAME / "shards")
    finished = len(list((killed / NAME / "shards").glob("*/shard-*.json")))
    resume_s, status = timed_run(index_command(args, embedder, source, killed), log)
    assert status == 0, f"the resumed run failed; see {log}"
    vectors, ids = stored(killed)
    expected_vectors, expected_ids = stored(whole)
    same_ids = ids == expected_ids and len(set(ids)) == args.items
    max_diff = float(np.abs(vectors - expected_vectors).max()) if same_ids else float("nan")
    sys.stdout.write(
        f"| run | seconds |\n|---|---|\n| uninterrupted | {full_s:.1f} |\n"
        f"| killed at {finished}/{num_shards} shards | {kill_s:.1f} |\n| resumed | {resume_s:.1f} |\n\n"
        f"items {args.items}, workers {args.workers}, device {args.device}; same ids in the same order, each once: "
        f"{same_ids}; max |vector difference| {max_diff:.2e}; time lost to the kill "
        f"{kill_s + resume_s - full_s:.1f} s ({(kill_s + resume_s) / full_s:.2f}x the uninterrupted run)\n")
    return 0 if same_ids and max_diff <= 1e-5 else 1


if __name__ == "__main__":
    raise SystemExit(main())
