"""Formatting training reports as tables for people (logs, the README)."""

from __future__ import annotations

from typing import Any

METRIC_COLUMNS = (("precision_at_1", "P@1"), ("r_precision", "R-prec"), ("map_at_r", "MAP@R"))


def metric_rows(report: dict[str, Any]) -> list[tuple[str, dict[str, float]]]:
    """(method, metrics) pairs from a training report's ``methods`` mapping, best MAP@R first."""
    methods: dict[str, dict[str, float]] = report.get("methods", {})
    return sorted(methods.items(), key=lambda item: -item[1].get("map_at_r", 0.0))


def format_metrics_table(report: dict[str, Any]) -> str:
    """A markdown table of held-out retrieval metrics, one row per method."""
    header = "| method | " + " | ".join(title for _, title in METRIC_COLUMNS) + " |"
    lines = [header, "|" + "---|" * (len(METRIC_COLUMNS) + 1)]
    for method, metrics in metric_rows(report):
        cells = " | ".join(f"{metrics.get(key, float('nan')):.3f}" for key, _ in METRIC_COLUMNS)
        lines.append(f"| {method} | {cells} |")
    return "\n".join(lines)
