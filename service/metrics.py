"""Prometheus metrics of one app (its own CollectorRegistry, so several apps in one process do not clash).

Per route: request counts by status and latency histograms. Per collection: stage histograms (decode,
embed, search), micro-batch sizes, queue depth, index size. Per state: re-index job counts. The last
three are read at scrape time from the registry and the job manager (no bookkeeping to drift). Also the
process (``process_resident_memory_bytes``, ``process_cpu_seconds_total``, ...), the platform, and
``arcsearch_build_info{version, python, torch, faiss}``.

Every label set is bounded, whatever clients send: ``method`` is one of ``KNOWN_METHODS`` or ``other``,
``route`` a route template or ``<unmatched>``, ``status`` a status code or ``other``.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, get_args

from prometheus_client import CollectorRegistry, Counter, Histogram, Info, PlatformCollector, ProcessCollector
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from arcsearch.service.schemas import JobState

if TYPE_CHECKING:
    from arcsearch.service.core.jobs import JobManager
    from arcsearch.service.core.registry import Registry

LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
STAGES = ("decode", "embed", "search")
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
OTHER = "other"


def method_label(method: str) -> str:
    return method if method in KNOWN_METHODS else OTHER


def status_label(status: int) -> str:
    return str(status) if 100 <= status <= 599 else OTHER


def build_labels() -> dict[str, str]:
    """Versions of arcsearch, Python, torch and FAISS (imported already by the time collections load)."""
    import faiss
    import torch

    import arcsearch
    return {"version": arcsearch.__version__, "python": platform.python_version(), "torch": str(torch.__version__),
            "faiss": str(getattr(faiss, "__version__", "unknown"))}


class _StateCollector(Collector):
    """Gauges computed when scraped: queue depth, index size, jobs by state."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterable[Metric]:
        depth = GaugeMetricFamily("arcsearch_batch_queue_depth", "queries waiting for a micro-batch",
                                  labels=["collection"])
        size = GaugeMetricFamily("arcsearch_index_items", "items in the live index", labels=["collection"])
        registry = self.metrics.registry
        for name, collection in sorted((registry.collections if registry else {}).items()):
            batcher = collection.batcher
            depth.add_metric([name], batcher.queue_depth if batcher else 0)
            store = collection.snapshot.store
            size.add_metric([name], len(store) if store is not None else 0)
        jobs = GaugeMetricFamily("arcsearch_jobs", "re-index jobs known to the service, by state", labels=["state"])
        counts = self.metrics.jobs.counts_by_state() if self.metrics.jobs else {}
        for state in get_args(JobState):
            jobs.add_metric([state], counts.get(state, 0))
        yield from (depth, size, jobs)


class Metrics:
    """The app's metrics; ``bind`` it to the registry and job manager for the scrape-time gauges."""

    def __init__(self) -> None:
        self.prometheus = CollectorRegistry(auto_describe=True)
        self.registry: Registry | None = None
        self.jobs: JobManager | None = None
        self.requests = Counter("arcsearch_requests", "HTTP requests by route template and status",
                                ["method", "route", "status"], registry=self.prometheus)
        self.latency = Histogram("arcsearch_request_duration_seconds", "HTTP request latency by route",
                                 ["method", "route"], buckets=LATENCY_BUCKETS_S, registry=self.prometheus)
        self.stages = Histogram("arcsearch_stage_duration_seconds", "time per query stage (decode, embed, search)",
                                ["stage", "collection"], buckets=LATENCY_BUCKETS_S, registry=self.prometheus)
        self.batch_size = Histogram("arcsearch_batch_size", "inputs per micro-batch (one forward pass each)",
                                    ["collection"], buckets=BATCH_BUCKETS, registry=self.prometheus)
        self.batch_queries = Histogram("arcsearch_batch_queries", "requests per micro-batch", ["collection"],
                                       buckets=BATCH_BUCKETS, registry=self.prometheus)
        self.prometheus.register(_StateCollector(self))
        ProcessCollector(registry=self.prometheus)
        PlatformCollector(registry=self.prometheus)
        Info("arcsearch_build", "versions of arcsearch and of the libraries it runs on",
             registry=self.prometheus).info(build_labels())

    def bind(self, registry: Registry, jobs: JobManager) -> None:
        self.registry, self.jobs = registry, jobs

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one request; ``route`` must be a route template or ``<unmatched>`` (never a raw path)."""
        self.requests.labels(method_label(method), route, status_label(status)).inc()
        self.latency.labels(method_label(method), route).observe(seconds)

    def stage_observer(self, collection: str) -> Callable[[str, float], None]:
        def observe(stage: str, seconds: float) -> None:
            self.stages.labels(stage, collection).observe(seconds)
        return observe

    def batch_observer(self, collection: str) -> Callable[[int, int], None]:
        def observe(queries: int, inputs: int) -> None:
            self.batch_size.labels(collection).observe(inputs)
            self.batch_queries.labels(collection).observe(queries)
        return observe
