"""From how many training classes does fine-tuning a pretrained text encoder pay? WordNet lexicographer files.

Fixed held-out classes (``--heldout-classes`` of the 45, seeded) are scored by MAP@R; the other classes
are the pool. For each N of ``--classes`` the first N pool classes (``--per-class`` texts each) train:
- ``pretrained``: all-MiniLM-L6-v2 as it is;
- ``plain``: fine-tuned ``--epochs`` epochs with no validation, the last epoch kept (the old default);
- ``selected``: the default now: validation classes (or items) carved out of the N, the start and every
  epoch as candidates, and under ``--remedies-below`` training classes the remedies of ``training.remedies``.
Held-out MAP@R of each, the gain over the pretrained encoder, what ``selected`` chose, and seconds.

Usage (after ``arcsearch prepare``; about 10-15 minutes on 2 shared CPU cores):
    .venv/bin/python -m bench.few_classes --texts data/wordnet_lexfiles.jsonl \\
        --model data/pretrained/all-MiniLM-L6-v2 --out artifacts/bench/few_classes.json
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from arcsearch.index.corpus import read_text_file
from arcsearch.training.config import TextTrainConfig
from arcsearch.training.data.splits import label_codes
from arcsearch.training.data.validation import plan_split
from arcsearch.training.evaluation.metrics import map_at_r
from arcsearch.training.evaluation.scoring import embed_texts
from arcsearch.training.fitting.text import fit_text_encoder, load_sentence_model
from arcsearch.training.selection import fit_selected

logger = logging.getLogger(__name__)
CPU = torch.device("cpu")


def sample(items: list[Any], classes: list[str], per_class: int, rng: np.random.Generator) -> list[Any]:
    """Up to ``per_class`` items of each of ``classes``, seeded."""
    chosen = []
    for label in classes:
        members = [it for it in items if it.label == label]
        chosen += [members[i] for i in sorted(rng.permutation(len(members))[:per_class])]
    return chosen


def run_n(items: list[Any], *, model: str, config: TextTrainConfig, held: tuple[list[str], list[str]],
          selected: bool) -> dict[str, Any]:
    """Fine-tune on ``items`` (plain, or the default selection); held-out MAP@R and what was chosen."""
    encoder = load_sentence_model(model, device=CPU)
    texts, labels = [it.text for it in items], [it.label for it in items]
    started = time.perf_counter()
    if not selected:
        codes = label_codes(labels, sorted(set(labels)))
        fit_text_encoder(encoder, texts, codes, config=config, device=CPU)
        chosen = f"epoch {config.epochs}"
    else:
        split = plan_split(labels, holdout_fraction=0.0, validation_fraction=config.validation_fraction,
                           min_validation_classes=config.min_validation_classes, seed=config.seed)
        train, val = split.train, split.validation
        codes = label_codes([labels[i] for i in train], split.classes.train)
        choice, _ = fit_selected(encoder, lambda chosen_config: fit_text_encoder(
            encoder, [texts[i] for i in train], codes, config=chosen_config, device=CPU,
            validation=([texts[i] for i in val], [labels[i] for i in val]) if val.size else None),
            config, num_train_classes=len(split.classes.train), validated=bool(val.size))
        best = choice.result.best_epoch
        chosen = f"{choice.name}, {'start' if best is not None and best < 0 else f'epoch {(best or 0) + 1}'} " \
                 f"({split.mode})"
    return {"map_at_r": map_at_r(embed_texts(encoder, held[0]), held[1]), "chosen": chosen,
            "seconds": time.perf_counter() - started}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=Path, default=Path("data/wordnet_lexfiles.jsonl"))
    parser.add_argument("--model", default="data/pretrained/all-MiniLM-L6-v2")
    parser.add_argument("--classes", type=int, nargs="+", default=[3, 6, 12, 24, 33])
    parser.add_argument("--heldout-classes", type=int, default=12)
    parser.add_argument("--per-class", type=int, default=24, help="training texts per class")
    parser.add_argument("--heldout-per-class", type=int, default=30)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--remedies-below", type=int, default=13, help="try the remedies under this many classes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(2)
    items = read_text_file(args.texts)
    rng = np.random.default_rng(args.seed)
    classes = sorted({it.label for it in items})
    order = [classes[i] for i in rng.permutation(len(classes))]
    held_items = sample(items, order[:args.heldout_classes], args.heldout_per_class, rng)
    held = ([it.text for it in held_items], [it.label for it in held_items])
    pool = order[args.heldout_classes:]
    pretrained = map_at_r(embed_texts(load_sentence_model(args.model, device=CPU), held[0]), held[1])
    rows = []
    for n in args.classes:
        train_items = sample(items, pool[:n], args.per_class, np.random.default_rng(args.seed + n))
        config = TextTrainConfig(texts_file=args.texts, out_dir=Path("unused"), model=args.model, epochs=args.epochs,
                                 batch_size=32, device="cpu", show_progress=False, seed=args.seed,
                                 remedy_below_classes=args.remedies_below)
        plain = run_n(train_items, model=args.model, config=config, held=held, selected=False)
        chosen = run_n(train_items, model=args.model, config=config, held=held, selected=True)
        rows.append({"train_classes": n, "train_texts": len(train_items), "pretrained": pretrained,
                     "plain": plain, "selected": chosen})
        logger.info("N=%d: pretrained %.4f, plain %.4f, selected %.4f (%s)", n, pretrained, plain["map_at_r"],
                    chosen["map_at_r"], chosen["chosen"])
    sys.stdout.write(table(rows, heldout=len(held_items)) + "\n")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}, indent=2))
    return 0


def table(rows: list[dict[str, Any]], *, heldout: int) -> str:
    """Markdown: one row per number of training classes."""
    lines = [f"held-out MAP@R on {heldout} texts of unseen classes",
             "| train classes | texts | pretrained | plain fine-tuning (gain) | selected (gain) | chosen | s |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        base, plain, sel = r["pretrained"], r["plain"]["map_at_r"], r["selected"]["map_at_r"]
        lines.append(f"| {r['train_classes']} | {r['train_texts']} | {base:.4f} | {plain:.4f} ({plain - base:+.4f}) "
                     f"| {sel:.4f} ({sel - base:+.4f}) | {r['selected']['chosen']} | "
                     f"{r['plain']['seconds'] + r['selected']['seconds']:.0f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
