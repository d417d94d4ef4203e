"""Resumable re-index: embed a corpus in shards written as they finish, resume from the last finished one.

The corpus (in its reading order) is cut into shards of ``shard_items`` items, a multiple of the batch size
so that every batch, and so every vector, is the one an unsharded ``embed_corpus`` computes. Shards are
embedded in this process (``workers=1``, with the embedder given) or by worker processes
(index.shard_workers), and each is written atomically to the work folder (index.shard_files) as soon as
it is done. A build killed at any point leaves whole shards only; the next build of the same corpus with
the same embedder skips them, and the index is assembled from all shards in order, every item once.
``arcsearch index`` and the service's re-index jobs both build this way.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from arcsearch.index.build import (
    CorpusEmbedder,
    CorpusItem,
    EmbeddedCorpus,
    FailureCallback,
    IndexBuildError,
    ProgressCallback,
    check_corpus,
    log_failure,
    read_source,
    store_from_corpus,
)
from arcsearch.index.bundle import IndexManifest
from arcsearch.index.chooser import IndexBudget
from arcsearch.index.embedder import load_embedder
from arcsearch.index.items import ItemRecord
from arcsearch.index.shard_files import (
    Failure,
    ShardPlan,
    ShardWorkError,
    corpus_fingerprint,
    finished_shards,
    locked_work_root,
    open_work_dir,
    read_shard,
    write_shard,
)
from arcsearch.index.shard_workers import default_workers, embed_shard, start_pool, submit_shard
from arcsearch.index.store import IndexStore

logger = logging.getLogger(__name__)

DEFAULT_SHARD_ITEMS = 4096
SHARDS_DIR = "shards"  # <collection>/shards/: the work folder of the collection's next version


@dataclass(frozen=True)
class ShardedCorpus:
    """An embedded corpus, the work folder its shards are in, and how many items earlier runs had embedded."""

    corpus: EmbeddedCorpus
    work_dir: Path
    resumed_items: int


@dataclass
class _Run:
    """One build's progress: items done (resumed ones included), reported to a callback and a tqdm bar."""

    plan: ShardPlan
    bar: tqdm
    progress: ProgressCallback | None
    on_failure: FailureCallback
    done: int = 0

    def advance(self, items: int) -> None:
        self.done += items
        self.bar.update(items)
        if self.progress is not None:
            self.progress(self.done, self.plan.num_items)

    def finish_shard(self, failures: Sequence[Failure]) -> None:
        for item_id, reason in failures:
            self.on_failure(item_id, reason)


def shard_size(shard_items: int, batch_size: int) -> int:
    """``shard_items`` rounded up to a whole number of batches (so shard boundaries never split a batch)."""
    if shard_items < 1 or batch_size < 1:
        raise IndexBuildError(f"shard_items and batch_size must be at least 1, got {shard_items}, {batch_size}")
    return -(-shard_items // batch_size) * batch_size


def _replay_failures(work_dir: Path, shards: Sequence[int], on_failure: FailureCallback) -> None:
    """Report again the failed items of shards finished by an earlier run (their .json lists them)."""
    for shard in shards:
        body = json.loads((work_dir / f"shard-{shard:06d}.json").read_text(encoding="utf-8"))
        for item_id, reason in body["failures"]:
            on_failure(item_id, reason)


def _run_here(embedder: CorpusEmbedder, items: Sequence[CorpusItem], run: _Run, work_dir: Path, todo: list[int],
              *, batch_size: int, before_batch: Callable[[], object] | None) -> None:
    for shard in todo:
        start, stop = run.plan.bounds(shard)
        base = run.done

        def batch_done(done: int, _total: int, base: int = base) -> None:
            run.advance(base + done - run.done)
        corpus, failures = embed_shard(embedder, items[start:stop], batch_size=batch_size, progress=batch_done,
                                       before_batch=before_batch)
        write_shard(work_dir, shard, corpus.vectors, corpus.records, failures)
        run.finish_shard(failures)


def _run_in_pool(pool: ProcessPoolExecutor, items: Sequence[CorpusItem], run: _Run, work_dir: Path,
                 todo: list[int], *, batch_size: int, workers: int, before_batch: Callable[[], object] | None) -> None:
    """Keep 2 shards per worker in flight; ``before_batch`` runs before each submission (a cancel check)."""
    waiting, running = list(todo), set()
    while waiting or running:
        while waiting and len(running) < 2 * workers:
            if before_batch is not None:
                before_batch()
            start, stop = run.plan.bounds(waiting[0])
            running.add(submit_shard(pool, work_dir, waiting.pop(0), items[start:stop], batch_size=batch_size))
        finished, running = wait(running, return_when=FIRST_COMPLETED)
        for future in finished:
            _shard, count, failures = future.result()
            run.advance(count)
            run.finish_shard(failures)


def _assemble(embedder: CorpusEmbedder, items: Sequence[CorpusItem], plan: ShardPlan, work_dir: Path, *,
              batch_size: int) -> EmbeddedCorpus:
    """Vectors and records of every shard in order (a shard found damaged is embedded again here)."""
    chunks: list[np.ndarray] = []
    records: list[ItemRecord] = []
    for shard in range(plan.num_shards):
        found = read_shard(work_dir, shard)
        if found is None:
            start, stop = plan.bounds(shard)
            corpus, failures = embed_shard(embedder, items[start:stop], batch_size=batch_size)
            write_shard(work_dir, shard, corpus.vectors, corpus.records, failures)
            found = read_shard(work_dir, shard)
            assert found is not None
        chunks.append(found.vectors)
        records.extend(found.records)
    vectors = np.concatenate(chunks) if chunks else np.zeros((0, embedder.dim), np.float32)
    return EmbeddedCorpus(vectors=vectors, records=records, skipped=len(items) - len(records))


def embed_sharded(embedder: CorpusEmbedder, items: Sequence[CorpusItem], *, work_root: Path, batch_size: int = 64,
                  shard_items: int = DEFAULT_SHARD_ITEMS, workers: int = 1, embedder_dir: Path | None = None,
                  device: str = "cpu", progress: ProgressCallback | None = None,
                  on_resume: Callable[[int], None] | None = None, show_progress: bool = False,
                  on_failure: FailureCallback | None = None,
                  before_batch: Callable[[], object] | None = None) -> ShardedCorpus:
    """Embed ``items`` in resumable shards under ``work_root`` (see the module doc); the vectors equal
    ``embed_corpus``'s. ``workers`` > 1 starts that many processes that load ``embedder_dir`` on ``device``;
    ``on_resume(items)`` is told how many items earlier runs had embedded; the rest as ``embed_corpus``."""
    check_corpus(embedder, items, batch_size=batch_size)
    if workers < 1:
        raise IndexBuildError(f"workers must be at least 1, got {workers}")
    if workers > 1 and embedder_dir is None:
        raise IndexBuildError("worker processes need the embedder bundle's folder (embedder_dir)")
    size = shard_size(shard_items, batch_size)
    fingerprint = corpus_fingerprint(items, embedder_sha256=embedder.manifest.weights_sha256, batch_size=batch_size,
                                     shard_items=size)
    plan = ShardPlan(fingerprint, len(items), size)
    try:
        with locked_work_root(work_root):
            work_dir = open_work_dir(work_root, plan)
            finished = set(finished_shards(work_dir, plan))
            todo = [shard for shard in range(plan.num_shards) if shard not in finished]
            resumed = sum(stop - start for start, stop in map(plan.bounds, finished))
            if resumed:
                logger.info("resuming: %d of %d items (%d of %d shards) were embedded by an earlier run",
                            resumed, plan.num_items, len(finished), plan.num_shards)
            if on_resume is not None:
                on_resume(resumed)
            report = on_failure or log_failure
            _replay_failures(work_dir, sorted(finished), report)
            with tqdm(total=plan.num_items, initial=resumed, desc=f"embedding {embedder.modality}s", unit="item",
                      disable=not show_progress) as bar:
                run = _Run(plan, bar, progress, report, done=resumed)
                if progress is not None:
                    progress(resumed, plan.num_items)
                if workers == 1 or len(todo) <= 1:
                    _run_here(embedder, items, run, work_dir, todo, batch_size=batch_size, before_batch=before_batch)
                else:
                    with start_pool(Path(embedder_dir), workers=min(workers, len(todo)), device=device) as pool:
                        try:
                            _run_in_pool(pool, items, run, work_dir, todo, batch_size=batch_size,
                                         workers=workers, before_batch=before_batch)
                        except BaseException:
                            pool.shutdown(wait=True, cancel_futures=True)
                            raise
            corpus = _assemble(embedder, items, plan, work_dir, batch_size=batch_size)
    except ShardWorkError as exc:
        raise IndexBuildError(str(exc)) from None
    if corpus.skipped:
        logger.warning("skipped %d of %d items that could not be read", corpus.skipped, len(items))
    return ShardedCorpus(corpus, work_dir, resumed)


def build_sharded_store(embedder: CorpusEmbedder, items: Sequence[CorpusItem], *, work_root: Path,
                        factory: str | None = "Flat", budget: IndexBudget | None = None, source: str = "",
                        **options: object) -> tuple[IndexStore, ShardedCorpus]:
    """``embed_sharded`` (``options`` are its keyword arguments), then an in-memory IndexStore of the result
    (``factory``, or when None one chosen by ``budget``)."""
    sharded = embed_sharded(embedder, items, work_root=work_root, **options)  # type: ignore[arg-type]
    return store_from_corpus(embedder, sharded.corpus, factory=factory, budget=budget, source=source), sharded


def remove_work(work_dir: Path) -> None:
    """Remove a build's shards once its index is published (nothing is left to resume)."""
    shutil.rmtree(work_dir, ignore_errors=True)


def build_sharded_bundle(embedder_dir: Path, source: Path, out_dir: Path, *, work_root: Path,
                         factory: str | None = "Flat", budget: IndexBudget | None = None, batch_size: int = 64,
                         device: str = "auto", workers: int | None = None,
                         shard_items: int = DEFAULT_SHARD_ITEMS) -> tuple[IndexManifest, Path]:
    """``build.build_index_bundle`` in resumable shards under ``work_root``, with a tqdm bar; ``workers`` None
    is one per CUDA device, else one. Returns the manifest and the work folder (remove it once published)."""
    embedder = load_embedder(Path(embedder_dir), device=device)
    items = read_source(Path(source), embedder.modality)
    workers = workers or default_workers(device)
    logger.info("indexing %d %s items from %s with factory %r (%d workers)", len(items), embedder.modality,
                source, factory, workers)
    store, sharded = build_sharded_store(embedder, items, work_root=work_root, factory=factory, budget=budget,
                                         source=str(Path(source).resolve()), batch_size=batch_size,
                                         shard_items=shard_items, workers=workers, embedder_dir=Path(embedder_dir),
                                         device=device, show_progress=True)
    store.save(Path(out_dir))
    logger.info("index bundle %s: %d items, %d skipped", out_dir, len(store), sharded.corpus.skipped)
    return store.manifest, sharded.work_dir
