"""Worker processes of a sharded re-index: each loads the embedder once and embeds (and writes) whole shards.

On CPU the workers share the cores (``threads`` torch threads each, workers x threads ~ cores); on CUDA
there is one worker per device. Processes are started with ``spawn`` (no forked torch or CUDA state),
and each one exits on its own when its parent dies (SIGKILL included), so a killed build leaves no
worker behind.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch

from arcsearch.index.build import CorpusEmbedder, CorpusItem, EmbeddedCorpus, embed_corpus
from arcsearch.index.embedder import available_cores, load_embedder, resolve_device
from arcsearch.index.shard_files import Failure, write_shard

logger = logging.getLogger(__name__)

PARENT_POLL_S = 0.5
_state: dict[str, Any] = {}  # the worker process's embedder, set once by _start_worker


def embed_shard(embedder: CorpusEmbedder, items: Sequence[CorpusItem], *, batch_size: int,
                progress: Callable[[int, int], None] | None = None,
                before_batch: Callable[[], object] | None = None) -> tuple[EmbeddedCorpus, list[Failure]]:
    """Embed one shard's items; returns the embedded corpus and its failed items (id, reason)."""
    failures: list[Failure] = []
    corpus = embed_corpus(embedder, items, batch_size=batch_size, show_progress=False, progress=progress,
                          on_failure=lambda item_id, reason: failures.append((item_id, reason)),
                          before_batch=before_batch)
    return corpus, failures


def _exit_with_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(PARENT_POLL_S)
    os._exit(1)  # the build that started this worker is gone: its shards are no one's to write


def _start_worker(embedder_dir: str, devices: Any, threads: int, parent_pid: int) -> None:
    threading.Thread(target=_exit_with_parent, args=(parent_pid,), daemon=True).start()
    torch.set_num_threads(threads)
    _state["embedder"] = load_embedder(Path(embedder_dir), device=devices.get())


def _embed_and_write(work_dir: str, shard: int, items: Sequence[CorpusItem], batch_size: int
                     ) -> tuple[int, int, list[Failure]]:
    """(shard, items in it, failures), once the shard's files are written."""
    corpus, failures = embed_shard(_state["embedder"], items, batch_size=batch_size)
    write_shard(Path(work_dir), shard, corpus.vectors, corpus.records, failures)
    return shard, len(items), failures


def worker_devices(device: str, workers: int) -> list[str]:
    """The device of each of ``workers`` workers: CUDA devices round-robin (the one named, or all), or cpu."""
    resolved = resolve_device(device)
    if resolved.type != "cuda":
        return ["cpu"] * workers
    names = [str(resolved)] if resolved.index is not None else [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return [names[i % len(names)] for i in range(workers)]


def default_workers(device: str) -> int:
    """One worker per CUDA device; one on CPU, where torch already spreads each batch over the cores."""
    resolved = resolve_device(device)
    if resolved.type == "cuda" and resolved.index is None:
        return max(1, torch.cuda.device_count())
    return 1


def start_pool(embedder_dir: Path, *, workers: int, device: str) -> ProcessPoolExecutor:
    """``workers`` spawned processes, each with the embedder of ``embedder_dir`` loaded on its own device."""
    context = multiprocessing.get_context("spawn")
    devices = context.Queue()
    for name in worker_devices(device, workers):
        devices.put(name)
    threads = max(1, available_cores() // workers)
    logger.info("starting %d embedding workers (%d torch threads each) on %s", workers, threads, device)
    return ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_start_worker,
                               initargs=(str(embedder_dir), devices, threads, os.getpid()))


def submit_shard(pool: ProcessPoolExecutor, work_dir: Path, shard: int, items: Sequence[CorpusItem], *,
                 batch_size: int) -> Any:
    """A future of ``(shard, items, failures)`` for one shard embedded and written by a worker."""
    return pool.submit(_embed_and_write, str(work_dir), shard, list(items), batch_size)
