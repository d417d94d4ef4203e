"""Training memory against corpus size, and loader throughput against the number of workers.

Generates image corpora of each ``--sizes`` (class folders of small noisy PNGs, 100 per class, each class
its own colour pattern) under ``--work-dir``, runs ``arcsearch train`` on each as a subprocess with every
``--workers`` count for a fixed time budget (small CNN, no held-out classes, so that only reading the
corpus and training count; the small CNN at its default 112 px), and measures:
- peak RSS: the largest single process of the run (``ru_maxrss`` of a wrapper that waits for it alone) and
  the peak sum of PSS over the run's process tree (the training process and its loader workers, sampled
  from /proc every 0.2 s; PSS shares pages between processes, so the sum does not count them twice);
- samples/s: steps x batch size / training seconds, from the run's report.
The corpora are deleted afterwards (``--keep`` keeps them). Prints a markdown table; ``--out`` writes JSON.

Usage:
    .venv/bin/python -m bench.scale_training --work-dir /tmp/scale --sizes 20000 200000 --workers 0 1 2
Target: peak RSS does not grow with the corpus (decoding a corpus up front grows it by every image).
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

logger = logging.getLogger(__name__)
PER_CLASS, IMAGE_SIDE = 100, 48
WRAPPER = ("import resource, subprocess, sys; code = subprocess.call(sys.argv[1:]); "
           "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(code)")


def _write_class(job: tuple[Path, int, int]) -> None:
    """Write ``count`` noisy variations of class ``k``'s colour pattern into ``folder``."""
    folder, k, count = job
    rng = np.random.default_rng(k)
    pattern = np.kron(rng.integers(0, 256, (4, 4, 3)), np.ones((IMAGE_SIDE // 4, IMAGE_SIDE // 4, 1)))
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        noisy = np.clip(pattern + rng.normal(0, 12, pattern.shape), 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(folder / f"{i}.png", compress_level=1)


def generate_corpus(root: Path, num_images: int, *, processes: int = 2) -> Path:
    """``root/c<k>/<i>.png``: ``num_images`` 48x48 PNGs, ``PER_CLASS`` per class (the last class the rest)."""
    classes = max(2, -(-num_images // PER_CLASS))
    counts = [min(PER_CLASS, num_images - k * PER_CLASS) for k in range(classes)]
    jobs = [(root / f"c{k:05d}", k, count) for k, count in enumerate(counts) if count > 0]
    with multiprocessing.Pool(processes) as pool:
        pool.map(_write_class, jobs, chunksize=8)
    return root


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants, from /proc (threads' children lists)."""
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                queue += [int(child) for child in (task / "children").read_text().split()]
            except OSError:
                continue
    return found


def _pss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def run_measured(command: list[str], *, interval_s: float = 0.2) -> dict[str, Any]:
    """Run ``command``; its exit code, the largest single process's max RSS and the peak summed PSS of its
    process tree, in MiB."""
    process = subprocess.Popen([sys.executable, "-c", WRAPPER, *command], stdout=subprocess.PIPE, text=True)
    peak = [0]

    def sample() -> None:
        while process.poll() is None:
            peak[0] = max(peak[0], sum(_pss_kib(pid) for pid in _tree(process.pid)))
            time.sleep(interval_s)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, _ = process.communicate()
    sampler.join()
    return {"returncode": process.returncode, "max_rss_mib": int(out.split()[-1]) / 1024 if out.split() else None,
            "peak_tree_pss_mib": peak[0] / 1024}


def train_command(images: Path, out: Path, *, workers: int, seconds: float, batch_size: int) -> list[str]:
    return [sys.executable, "-m", "arcsearch", "train", "--images", str(images), "--out", str(out),
            "--backbone", "small_cnn", "--embedding-dim", "64", "--batch-size", str(batch_size),
            "--holdout-fraction", "0", "--closed-set-fraction", "0", "--epochs", "5",
            "--max-train-seconds", str(seconds), "--device", "cpu", "--workers", str(workers)]


def measure(images: Path, out: Path, *, workers: int, seconds: float, batch_size: int) -> dict[str, Any]:
    """One training run: memory, steps and samples per second."""
    row = run_measured(train_command(images, out, workers=workers, seconds=seconds, batch_size=batch_size))
    if row["returncode"] != 0:
        raise RuntimeError(f"arcsearch train failed ({row['returncode']}) on {images} with {workers} workers")
    fit = json.loads((out.parent / f"{out.name}_report.json").read_text(encoding="utf-8"))["fit"]
    return {**row, "workers": workers, "steps": fit["steps"], "train_seconds": fit["train_seconds"],
            "samples_per_s": fit["steps"] * batch_size / fit["train_seconds"]}


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| images | workers | steps | samples/s | max RSS, largest process (MiB) | peak PSS, process tree (MiB) |",
             "|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['images']:,} | {r['workers']} | {r['steps']} | {r['samples_per_s']:.0f} | {r['max_rss_mib']:.0f} "
              f"| {r['peak_tree_pss_mib']:.0f} |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", type=Path, required=True, help="where the corpora and runs are written")
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000, 200_000], help="images per corpus")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="loader workers to measure")
    parser.add_argument("--seconds", type=float, default=60.0, help="training time budget of each run")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--keep", action="store_true", help="keep the generated corpora")
    parser.add_argument("--out", type=Path, help="write the rows as JSON here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    rows = []
    for size in args.sizes:
        started = time.perf_counter()
        corpus = generate_corpus(args.work_dir / f"corpus_{size}", size)
        logger.info("%d images written in %.0f s", size, time.perf_counter() - started)
        try:
            for workers in args.workers:
                run = args.work_dir / "runs" / f"images{size}_workers{workers}"
                rows.append({"images": size, **measure(corpus, run, workers=workers, seconds=args.seconds,
                                                       batch_size=args.batch_size)})
                logger.info("%s", rows[-1])
        finally:
            if not args.keep:
                shutil.rmtree(corpus, ignore_errors=True)
    sys.stdout.write(markdown(rows) + "\n")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
