"""What truncation costs on texts longer than the encoder's window, and what chunking costs in throughput.

Long documents are made of real text: the WordNet glosses of one lexicographer file (``wordnet_lexfiles.jsonl``,
written by ``arcsearch prepare``), shuffled with a seed and joined ``--glosses`` at a time, so every document
is about its class from start to end. Each document queries all the others (MAP@R by class, as training
reports it) under each policy and window: ``truncate`` (the first window only; what every bundle did before
``long_texts`` existed) and ``chunk`` (all windows, token-weighted mean; index/long_texts.py). Throughput is
documents embedded per second, the median of ``--repeats`` passes over all documents, interleaved by policy.

Usage (after ``arcsearch prepare``; nothing downloads):
    .venv/bin/python -m bench.long_texts --model data/pretrained/all-MiniLM-L6-v2 \\
        --lexfiles data/wordnet_lexfiles.jsonl --glosses 8 32 --windows 64 128 256 --out artifacts/bench/long_texts.json
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from arcsearch.index.bundle import TextPreprocessing, write_json_atomic
from arcsearch.index.corpus import read_text_file
from arcsearch.index.long_texts import text_token_counts
from arcsearch.training.evaluation.metrics import map_at_r
from arcsearch.training.fitting.text import load_sentence_model
from arcsearch.training.fitting.text_policy import embed_with_policy

logger = logging.getLogger(__name__)
POLICIES = ("truncate", "chunk")


def long_documents(lexfiles: Path, *, glosses: int, per_class: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """(texts, labels): for each class with at least ``glosses * per_class`` glosses, ``per_class`` documents of
    ``glosses`` of its glosses (shuffled with ``seed``) joined by spaces."""
    by_class: dict[str, list[str]] = defaultdict(list)
    for item in read_text_file(lexfiles):
        by_class[str(item.label)].append(item.text)
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for label in sorted(by_class):
        pool = [by_class[label][i] for i in rng.permutation(len(by_class[label]))]
        if len(pool) < glosses * per_class:
            continue
        texts += [" ".join(pool[d * glosses:(d + 1) * glosses]) for d in range(per_class)]
        labels += [label] * per_class
    return texts, labels


def measure(model: Any, texts: list[str], labels: list[str], *, window: int, repeats: int) -> dict[str, dict]:
    """{policy: {map_at_r, docs_per_s}} at ``window`` tokens; passes interleaved by policy, medians of ``repeats``."""
    seconds: dict[str, list[float]] = {name: [] for name in POLICIES}
    vectors: dict[str, np.ndarray] = {}
    for _ in range(repeats):
        for name in POLICIES:
            policy = TextPreprocessing(max_seq_length=window, long_texts=name)  # type: ignore[arg-type]
            start = time.perf_counter()
            vectors[name] = embed_with_policy(model, texts, policy)
            seconds[name].append(time.perf_counter() - start)
    return {name: {"map_at_r": map_at_r(vectors[name], labels),
                   "docs_per_s": len(texts) / statistics.median(seconds[name])} for name in POLICIES}


def run(model: Any, lexfiles: Path, *, glosses: list[int], windows: list[int], docs_per_class: int,
        repeats: int) -> list[dict[str, Any]]:
    """One row per (glosses per document, window): token lengths, and each policy's MAP@R and throughput."""
    rows = []
    for count in glosses:
        texts, labels = long_documents(lexfiles, glosses=count, per_class=docs_per_class)
        tokens = text_token_counts(model.tokenizer, texts)
        for window in windows:
            logger.info("%d documents of %d glosses (median %d tokens), window %d", len(texts), count,
                        int(np.median(tokens)), window)
            result = measure(model, texts, labels, window=window, repeats=repeats)
            rows.append({"glosses": count, "documents": len(texts), "classes": len(set(labels)),
                         "median_tokens": int(np.median(tokens)), "window": window,
                         "longer_than_window": float(np.mean(tokens > window - 2)), **result})
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    """The rows as a markdown table: MAP@R and documents per second of each policy, and their ratios."""
    lines = ["| glosses/doc | docs (classes) | median tokens | window | longer than window | MAP@R truncate | "
             "MAP@R chunk | docs/s truncate | docs/s chunk | chunk time / truncate |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        truncate, chunk = row["truncate"], row["chunk"]
        lines.append(f"| {row['glosses']} | {row['documents']} ({row['classes']}) | {row['median_tokens']} | "
                     f"{row['window']} | {row['longer_than_window']:.0%} | {truncate['map_at_r']:.3f} | "
                     f"{chunk['map_at_r']:.3f} | {truncate['docs_per_s']:.1f} | {chunk['docs_per_s']:.1f} | "
                     f"{truncate['docs_per_s'] / chunk['docs_per_s']:.2f}x |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("data/pretrained/all-MiniLM-L6-v2"),
                        help="a local sentence-transformers folder")
    parser.add_argument("--lexfiles", type=Path, default=Path("data/wordnet_lexfiles.jsonl"))
    parser.add_argument("--glosses", type=int, nargs="+", default=[8, 32], help="glosses joined per document")
    parser.add_argument("--windows", type=int, nargs="+", default=[64, 128, 256], help="max_seq_length values")
    parser.add_argument("--docs-per-class", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    model = load_sentence_model(str(args.model), device=torch.device(args.device)).eval()
    rows = run(model, args.lexfiles, glosses=args.glosses, windows=args.windows,
               docs_per_class=args.docs_per_class, repeats=args.repeats)
    table = markdown(rows)
    logger.info("long texts on %s (torch %s, %d threads):\n%s", args.device, torch.__version__,
                torch.get_num_threads(), table)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(args.out, {"rows": rows, "table": table, "device": args.device})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
