"""Closed-set retrieval: new items of the training classes, searched with other new items of those classes.

The corpus is the closed set of ``training.data.closed_set``: the items of the training classes held out
before training (never trained on, never used for validation). Every closed-set item is a query against all
the other closed-set items (leave-one-out; itself excluded); its relevant items are the other closed-set items
of its class (R of them), and queries with R = 0 are skipped. Training items are not in the corpus. Metrics
are those of ``training.evaluation.metrics`` (P@1, R-precision, MAP@R), for the fine-tuned encoder and for
each baseline the open-set evaluation scores.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from arcsearch.training.evaluation.metrics import retrieval_metrics

logger = logging.getLogger(__name__)

PROTOCOL = ("leave-one-out among the held-out items of the training classes: each is a query against all the "
            "others; relevant = the others of its class (R); queries with R = 0 skipped; training items not indexed")


def has_queries(labels: Sequence[str]) -> bool:
    """Whether some class has two items, so that at least one query has a relevant item."""
    return any(count > 1 for count in Counter(labels).values())


def closed_set_metrics(embeddings: Any, labels: Sequence[str]) -> dict[str, float] | None:
    """P@1, R-precision, MAP@R and num_queries of (N, D) dense or sparse embeddings of the closed-set items,
    each queried against the others (``retrieval_metrics``); None when no class has two items (no query)."""
    return retrieval_metrics(embeddings, labels) if has_queries(labels) else None


@dataclass
class ClosedSet:
    """The closed-set items (``inputs``: paths or texts, their ``labels`` and ``item_ids``) of one run and the
    scores of each method on them (method -> metrics), filled by ``score``."""

    inputs: list
    labels: list[str]
    item_ids: list[str]
    fraction: float
    methods: dict[str, dict[str, float]] = field(default_factory=dict)

    def score(self, method: str, embed: Callable[[list], Any]) -> None:
        """Score ``method``: ``embed(inputs)`` gives the (N, D) embeddings of the closed-set inputs (called only
        when there is a query)."""
        if has_queries(self.labels):
            self.methods[method] = closed_set_metrics(embed(self.inputs), self.labels) or {}

    def summary(self) -> dict[str, Any]:
        """The report's ``closed_set`` entry: fraction, protocol, item and class counts, item ids, methods."""
        if not has_queries(self.labels):
            logger.warning("no closed-set numbers: no training class has two held-out items (fraction %s)",
                           self.fraction)
        return {"fraction": self.fraction, "protocol": PROTOCOL, "num_items": len(self.labels),
                "num_classes": len(set(self.labels)), "item_ids": list(self.item_ids), "methods": self.methods}


def closed_set_table(methods: dict[str, dict[str, float]]) -> str:
    """A plain-text table of closed-set scores: one row per method, P@1, R-precision, MAP@R and queries."""
    header = f"{'method':<28} {'P@1':>7} {'R-prec':>7} {'MAP@R':>7} {'queries':>8}"
    rows = [header, "-" * len(header)]
    rows += [f"{name:<28} {result['precision_at_1']:>7.4f} {result['r_precision']:>7.4f} {result['map_at_r']:>7.4f} "
             f"{result['num_queries']:>8d}" for name, result in methods.items()]
    return "\n".join(rows)


def closed_set_methods(report: dict[str, Any]) -> dict[str, dict[str, float]]:
    """method -> closed-set metrics of a training report; empty for reports written before closed-set
    evaluation existed (or with a fraction of 0)."""
    return (report.get("closed_set") or {}).get("methods") or {}
