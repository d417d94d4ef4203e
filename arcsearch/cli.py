"""The ``arcsearch`` command line: a thin layer over training, index and service functions.

Heavy libraries are imported inside each command, so ``arcsearch --help`` answers at once.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import fields
from pathlib import Path

from arcsearch.training.objectives.params import OBJECTIVE_NAMES, ObjectiveParams

logger = logging.getLogger("arcsearch")

DEFAULT_DATA_DIR = Path("data")
DEFAULT_ARTIFACTS_DIR = Path("artifacts")


def _add_objective_params(parser: argparse.ArgumentParser) -> None:
    """One flag per ``ObjectiveParams`` field, e.g. ``--margin-rad``; booleans are switches."""
    group = parser.add_argument_group("objective hyper-parameters (each loss reads the ones it uses)")
    for knob in fields(ObjectiveParams):
        flag = "--" + knob.name.replace("_", "-")
        if isinstance(knob.default, bool):
            group.add_argument(flag, action="store_true", default=None, help=knob.metadata["help"])
        else:
            group.add_argument(flag, type=type(knob.default), help=knob.metadata["help"])


def _add_training_options(parser: argparse.ArgumentParser) -> None:
    """The flags of train, compare and tune. Each flag's destination is the name of the config field it sets
    (``training.config``; ``--loss`` sets ``objective``), which is how ``arcsearch.commands`` finds them."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", type=Path, help="folder with one sub-folder of images per class, or a "
                        ".csv/.jsonl/.parquet manifest with path and label columns")
    source.add_argument("--texts", type=Path, help="JSONL ({\"text\", \"label\"} per line), CSV or Parquet file")
    parser.add_argument("--out", type=Path, required=True, help="where to write the embedder bundle")
    parser.add_argument("--backbone", default="mobilenet_v2", choices=["mobilenet_v2", "small_cnn"],
                        help="image backbone (mobilenet_v2 is fine-tuned from --checkpoint)")
    parser.add_argument("--checkpoint", type=Path, help="pretrained image backbone weights (.pth or .safetensors)")
    parser.add_argument("--model", help="text encoder: a sentence-transformers model name or local folder")
    parser.add_argument("--max-seq-length", type=int, help="text window in tokens, for training and the bundle "
                                                           "(default: the model's)")
    parser.add_argument("--long-texts", choices=["truncate", "chunk", "auto"],
                        help="what the bundle does with a text longer than the window: truncate (default), chunk "
                             "(overlapping windows, averaged) or auto (the better on validation classes by MAP@R)")
    parser.add_argument("--epochs", type=int, help="training epochs (default: the modality's default)")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--lr", type=float, help="encoder learning rate")
    parser.add_argument("--head-lr", type=float, help="learning rate of the class centres (the head)")
    parser.add_argument("--weight-decay", type=float, help="AdamW weight decay of the encoder (default 1e-4)")
    parser.add_argument("--head-weight-decay", type=float, help="AdamW weight decay of the class centres (default 0)")
    parser.add_argument("--lr-schedule", choices=["cosine", "poly"], help="decay after warmup (default cosine)")
    parser.add_argument("--margin-warmup-fraction", type=float,
                        help="share of the steps over which a margin grows from nothing (default 0.2)")
    parser.add_argument("--loss", dest="objective", choices=OBJECTIVE_NAMES,
                        help="training objective (default: arcface)")
    _add_objective_params(parser)
    parser.add_argument("--workers", type=int,
                        help="image loader processes that decode and augment images as training needs them "
                        "(0: the training process itself; default min(4, CPUs - 1)); results do not depend on it")
    parser.add_argument("--embedding-dim", type=int, help="image embedding size (texts keep the model's)")
    parser.add_argument("--holdout-fraction", type=float, help="share of classes held out for evaluation")
    parser.add_argument("--closed-set-fraction", type=float,
                        help="share of each training class's items held out of training and searched among "
                        "themselves: the closed-set evaluation (default 0.2; 0: none)")
    parser.add_argument("--max-train-seconds", type=float,
                        help="stop training after this many seconds (the learning-rate schedule then follows "
                        "the clock, so the run is no longer deterministic)")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--sampler", choices=["auto", "shuffle", "class_balanced", "pk"],
                        help="batches: auto is P classes x K samples for triplet losses, shuffled otherwise")
    parser.add_argument("--samples-per-class", type=int, help="K of the pk sampler (default 4)")
    parser.add_argument("--validation-fraction", type=float,
                        help="share of the training classes kept for choosing what to export among the start "
                        "(epoch 0), every epoch and the remedies (default 0.15; 0: none, the last epoch is exported)")
    parser.add_argument("--min-validation-classes", type=int,
                        help="at least this many validation classes (default 3); with too few training classes "
                        "the run validates on held-back items of the training classes instead")
    parser.add_argument("--require-gain", action="store_true", default=None,
                        help="exit with status 2 and export nothing when fine-tuning cannot beat the start "
                        "on validation (default: export the start and say so)")
    parser.add_argument("--remedies", help="gentler fine-tuning tried on validation: auto (under "
                        "--remedy-below-classes training classes), none, or some of adapter,freeze_lower,low_lr,l2sp")
    parser.add_argument("--remedy-below-classes", type=int,
                        help="auto remedies are tried with fewer training classes than this (default 20)")
    parser.add_argument("--augment", choices=["none", "light", "default", "strong", "auto"],
                        help="image augmentation policy (default: default); auto trains with each and keeps the "
                        "best on validation")
    parser.add_argument("--no-flip", dest="flip", action="store_false", default=None,
                        help="never flip training images horizontally")
    parser.add_argument("--patience", type=int,
                        help="epochs without validation gain before stopping")
    parser.add_argument("--precision", choices=["fp32", "bf16", "fp16"],
                        help="mixed precision of the encoder (fp16 on cuda only); the margin math stays fp32")
    parser.add_argument("--checkpoint-every", type=int, help="write a training checkpoint every N steps")
    parser.add_argument("--checkpoint-dir", type=Path, help="where training checkpoints go (--checkpoint-every)")
    parser.add_argument("--resume", action="store_true", default=None,
                        help="continue from the checkpoint in --checkpoint-dir (same command otherwise)")


def build_parser() -> argparse.ArgumentParser:
    """The whole command line; tests parse docker-compose commands with it."""
    parser = argparse.ArgumentParser(prog="arcsearch", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    prepare = commands.add_parser("prepare", help="fetch and write the default data sets and pretrained weights")
    prepare.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)

    train = commands.add_parser("train",
                                help="train an encoder with an ArcFace (or another --loss) head, evaluate, export it")
    _add_training_options(train)

    evaluate = commands.add_parser("evaluate", help="retrieval metrics of an exported embedder on a corpus")
    evaluate.add_argument("--embedder", type=Path, required=True)
    corpus = evaluate.add_mutually_exclusive_group(required=True)
    corpus.add_argument("--images", type=Path)
    corpus.add_argument("--texts", type=Path)
    evaluate.add_argument("--all-classes", action="store_true",
                          help="use every class, not only those the embedder held out in training")

    index = commands.add_parser("index", help="embed a corpus and publish it as a collection's index")
    index.add_argument("--collection", required=True, help="collection name, e.g. images or texts")
    index.add_argument("--embedder", type=Path, required=True, help="embedder bundle folder")
    index.add_argument("--source", type=Path, required=True,
                       help="image folder or manifest, or a .jsonl/.csv/.parquet text file")
    index.add_argument("--collections-dir", type=Path, default=DEFAULT_ARTIFACTS_DIR / "collections")
    index.add_argument("--factory", help="FAISS index factory string; wins over --target-recall/--max-memory "
                       "(default: Flat, or the index those choose)")
    index.add_argument("--target-recall", type=float,
                       help="choose the index (Flat, HNSW, IVF-Flat, IVF-SQ8, IVF-PQ) and tune it to this recall@10 "
                       "against exact search (default 0.95 when --max-memory is given)")
    index.add_argument("--max-memory", help="bound on the chosen index's size, e.g. 2GiB or 512MB")
    index.add_argument("--batch-size", type=int, default=64)
    index.add_argument("--device", default="auto")
    index.add_argument("--workers", type=int, default=None,
                       help="embedding processes (default: one per CUDA device, else 1 in this process)")
    index.add_argument("--shard-items", type=int, default=None,
                       help="items per resumable shard (default 4096); a killed run resumes from its last shard")
    index.add_argument("--backend", choices=["faiss", "milvus"], default=os.environ.get("ARCSEARCH_INDEX_BACKEND"),
                       help="where the vectors go: FAISS bundles in the collection's folder, or Milvus (default "
                       "$ARCSEARCH_INDEX_BACKEND, else faiss)")
    index.add_argument("--milvus-uri", default=os.environ.get("ARCSEARCH_MILVUS_URI", ""),
                       help="the Milvus server for --backend milvus (default $ARCSEARCH_MILVUS_URI); the token, if "
                       "any, is read from $ARCSEARCH_MILVUS_TOKEN")

    serve = commands.add_parser("serve", help="run the HTTP service (settings from ARCSEARCH_* variables)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--collections-dir", type=Path)
    serve.add_argument("--data-root", type=Path)
    serve.add_argument("--device")

    compare = commands.add_parser("compare", help="train every loss on the same data, seeds and time budget; "
                                  "write a mean ± std table and pictures to --out")
    _add_training_options(compare)
    compare.add_argument("--losses", dest="objectives", metavar="LOSSES", nargs="+", default=["all"],
                         help="loss names, or all (default)")
    compare.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="one run per loss and seed")
    compare.add_argument("--overrides", type=Path, help="JSON {loss: {knob: value}} of per-loss hyper-parameters, "
                         "e.g. the tuned.json that `arcsearch tune` writes")
    compare.add_argument("--reuse", type=Path, help="an earlier compare --out folder: its runs with the very same "
                         "configuration are taken as they are instead of trained again")

    tune = commands.add_parser("tune", help="search each loss's own hyper-parameters on validation classes (never "
                               "the held-out ones); write tuning.md and tuned.json for compare --overrides")
    _add_training_options(tune)
    tune.add_argument("--losses", dest="objectives", metavar="LOSSES", nargs="+", default=["all"],
                      help="loss names, or all (default)")
    tune.add_argument("--seeds", nargs="+", type=int, default=[0], help="one run per grid point and seed")

    demo = commands.add_parser("demo", help="prepare, train, evaluate, export, index and serve the defaults")
    demo.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    demo.add_argument("--artifacts-dir", type=Path, default=DEFAULT_ARTIFACTS_DIR)
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8000)
    demo.add_argument("--device", default="auto")
    demo.add_argument("--no-serve", action="store_true", help="stop after indexing")
    return parser


def _run_command(args: argparse.Namespace) -> int:
    from arcsearch import commands

    handlers: dict[str, Callable[[argparse.Namespace], int]] = {
        "prepare": commands.prepare, "train": commands.train, "evaluate": commands.evaluate,
        "index": commands.index, "serve": commands.serve, "demo": commands.demo, "compare": commands.compare,
        "tune": commands.tune,
    }
    return handlers[args.command](args)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``arcsearch`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return _run_command(args)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        logger.error("%s", exc)
        return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
