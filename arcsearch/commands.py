"""Implementations of the CLI commands; each takes the parsed arguments and returns an exit status."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from collections.abc import Callable
from dataclasses import fields
from typing import Any

from arcsearch.training.evaluation.scoring import format_table

logger = logging.getLogger(__name__)


def print_json(payload: object) -> None:
    """Write a JSON document to stdout (the command's result, not a log line)."""
    sys.stdout.write(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")


def _config_kwargs(config_type: type, args: argparse.Namespace, **given: Any) -> dict[str, Any]:
    """Keyword arguments for a training config: every field of ``config_type`` that a flag of the parser set
    (a flag's destination is the field's name), the ``given`` ones, the objective's knobs gathered into
    ``objective_params``. Flags left out (None) take the config's defaults."""
    from arcsearch.training.objectives.params import ObjectiveParams

    flags = {name: value for name, value in vars(args).items() if value is not None}
    kwargs = {f.name: flags[f.name] for f in fields(config_type) if f.name in flags}
    kwargs.update({name: value for name, value in given.items() if value is not None})
    kwargs["objective_params"] = ObjectiveParams(**{f.name: flags[f.name] for f in fields(ObjectiveParams)
                                                    if f.name in flags})
    return kwargs


def prepare(args: argparse.Namespace) -> int:
    from arcsearch.prepare.defaults import prepare_all

    prepared = prepare_all(args.data_dir)
    print_json({name: str(path) for name, path in vars(prepared).items()})
    return 0


def training_config(args: argparse.Namespace) -> tuple[Any, Callable[..., dict[str, Any]]]:
    """The image or text training config the flags describe, and the ``training.run`` function for it."""
    from arcsearch.training.config import ImageTrainConfig, TextTrainConfig
    from arcsearch.training.run import train_images, train_texts

    if args.images is not None:
        if args.backbone == "mobilenet_v2" and args.checkpoint is None:
            raise ValueError("--backbone mobilenet_v2 needs --checkpoint (pretrained weights; "
                             "`arcsearch prepare` writes data/pretrained/mobilenet_v2-b0353104.pth), "
                             "or use --backbone small_cnn to train from scratch")
        return ImageTrainConfig(**_config_kwargs(ImageTrainConfig, args, images_dir=args.images,
                                                 out_dir=args.out)), train_images
    if args.model is None:
        raise ValueError("--texts needs --model: a sentence-transformers model name or local folder "
                         "(`arcsearch prepare` writes data/pretrained/all-MiniLM-L6-v2)")
    return TextTrainConfig(**_config_kwargs(TextTrainConfig, args, texts_file=args.texts,
                                            out_dir=args.out)), train_texts


def train(args: argparse.Namespace) -> int:
    from arcsearch.training.engine.distributed import distributed_session, is_main_process

    config, run = training_config(args)
    with distributed_session(device=config.device):  # a no-op unless started by torchrun with several processes
        report = run(config)
        if not is_main_process():
            return 0
    logger.info("held-out classes:\n%s", format_table(report["methods"]))
    logger.info("model selection: %s", report["selection"]["verdict"])
    logger.info("embedder bundle written to %s", args.out)
    return 0


def _objective_names(requested: list[str]) -> list[str]:
    """``all`` (every objective but the sharded ones, which equal ArcFace in one process) or the names given."""
    from arcsearch.training.objectives.params import OBJECTIVE_NAMES, SHARDED_OBJECTIVES

    names = [name for name in OBJECTIVE_NAMES if name not in SHARDED_OBJECTIVES] if requested == ["all"] else requested
    unknown = [name for name in names if name not in OBJECTIVE_NAMES]
    if unknown:
        raise ValueError(f"unknown loss(es) {unknown}; choose from {', '.join(OBJECTIVE_NAMES)} or 'all'")
    return names


def _read_overrides(path: Any) -> dict[str, dict[str, Any]]:
    """The JSON object {loss: {knob: value}} at ``path`` (an empty dict for None)."""
    import json

    if path is None:
        return {}
    overrides = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(overrides, dict) or not all(isinstance(v, dict) for v in overrides.values()):
        raise ValueError(f"{path}: expected a JSON object {{loss: {{knob: value}}}}")
    return overrides


def _refuse_torchrun(command: str) -> None:
    """ValueError when started by torchrun with several processes: only ``train`` runs data-parallel."""
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError(f"`arcsearch {command}` runs in one process; start it without torchrun "
                         "(only `arcsearch train` runs data-parallel)")


def _without_remedies(args: argparse.Namespace, made: tuple[Any, Any]) -> tuple[Any, Any]:
    """compare and tune measure the losses themselves: no remedies unless ``--remedies`` asks for them."""
    config, run = made
    return (config if args.remedies is not None else dataclasses.replace(config, remedies="none")), run


def compare(args: argparse.Namespace) -> int:
    from arcsearch.training.experiments.compare import compare_objectives

    _refuse_torchrun("compare")
    objectives = _objective_names(args.objectives)
    config, run = _without_remedies(args, training_config(args))
    result = compare_objectives(config, run, objectives=objectives, seeds=args.seeds, out_dir=args.out,
                                overrides=_read_overrides(args.overrides), reuse_dir=args.reuse)
    sys.stdout.write(result["table"] + "\n")
    return 0


def tune(args: argparse.Namespace) -> int:
    from arcsearch.training.experiments.tuning import tune_objectives

    _refuse_torchrun("tune")
    config, run = _without_remedies(args, training_config(args))
    if config.validation_fraction <= 0:
        config = dataclasses.replace(config, validation_fraction=0.25)
        logger.info("tuning on a quarter of the training classes (--validation-fraction 0.25)")
    result = tune_objectives(config, run, objectives=_objective_names(args.objectives), seeds=args.seeds,
                             out_dir=args.out)
    sys.stdout.write(result["table"] + "\n")
    return 0


def evaluate(args: argparse.Namespace) -> int:
    from arcsearch.index.bundle import read_embedder_manifest
    from arcsearch.training.evaluation.exported import evaluate_bundle

    only = None
    if not args.all_classes:
        only = read_embedder_manifest(args.embedder).training.get("heldout_classes")
    report = evaluate_bundle(args.embedder, args.images or args.texts, only_classes=only)
    print_json(report)
    return 0


def index_budget(target_recall: float | None, max_memory: str | int | None) -> Any:
    """The IndexBudget that ``--target-recall`` / ``--max-memory`` ask for, or None if neither is given."""
    from arcsearch.index.chooser import IndexBudget, parse_memory

    if target_recall is None and max_memory is None:
        return None
    return IndexBudget(target_recall=0.95 if target_recall is None else target_recall,
                       max_memory_bytes=None if max_memory is None else parse_memory(max_memory))


def index(args: argparse.Namespace) -> int:
    from arcsearch.index.collections import index_collection

    if args.backend == "milvus":
        return index_into_milvus(args)
    budget = index_budget(args.target_recall, args.max_memory)
    factory = args.factory or (None if budget is not None else "Flat")
    manifest = index_collection(args.collections_dir, args.collection, args.embedder, args.source,
                                 factory=factory, budget=budget, batch_size=args.batch_size, device=args.device,
                                 workers=args.workers, shard_items=args.shard_items)
    print_json(manifest.model_dump(mode="json"))
    return 0


def index_into_milvus(args: argparse.Namespace) -> int:
    import os

    from arcsearch.index.milvus_collections import index_milvus_collection
    from arcsearch.index.milvus_store import connect

    if not args.milvus_uri:
        raise SystemExit("arcsearch index --backend milvus needs --milvus-uri (or ARCSEARCH_MILVUS_URI)")
    if args.factory or args.target_recall is not None or args.max_memory is not None:
        raise SystemExit("--factory, --target-recall and --max-memory choose a FAISS index; Milvus collections "
                         "are searched exactly (FLAT)")
    client = connect(args.milvus_uri, token=os.environ.get("ARCSEARCH_MILVUS_TOKEN", ""))
    try:
        store = index_milvus_collection(args.collections_dir, args.collection, args.embedder, args.source, client,
                                        batch_size=args.batch_size, device=args.device, workers=args.workers,
                                        shard_items=args.shard_items)
        print_json({"collection": args.collection, "backend": "milvus", "version": store.version,
                    "num_items": len(store), **store.info.model_dump(mode="json")})
    finally:
        client.close()
    return 0


def _settings(args: argparse.Namespace) -> Any:
    from arcsearch.service.settings import Settings

    overrides = {name: getattr(args, name) for name in ("host", "port", "collections_dir", "data_root", "device")
                 if getattr(args, name, None) is not None}
    return Settings(**overrides)


def serve(args: argparse.Namespace) -> int:
    from arcsearch.service.server import serve as run_server

    run_server(_settings(args))
    return 0


def demo(args: argparse.Namespace) -> int:
    from arcsearch.demo import run_demo

    return run_demo(data_dir=args.data_dir, artifacts_dir=args.artifacts_dir, host=args.host, port=args.port,
                    device=args.device, serve=not args.no_serve)


