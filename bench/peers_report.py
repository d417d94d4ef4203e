"""The peers benchmark's markdown table and chart, from its JSON report (bench/peers.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

HEADER = ("| vectors | engine | search param | recall@10 | p50 / p99 ms, 1 client | p50 / in-process FAISS p50 "
          "| QPS, {clients} clients | build s | server RSS MiB |")
TARGETS = (("qps_vs_chroma", "arcsearch HTTP QPS / Chroma server QPS", ">=", 1.5),
           ("qps_vs_milvus", "arcsearch HTTP QPS / Milvus server QPS", ">=", 1.0),
           ("milvus_backend_qps_vs_milvus", "arcsearch-on-Milvus QPS / Milvus direct QPS", ">=", 1 / 1.3),
           ("milvus_backend_p50_vs_milvus", "arcsearch-on-Milvus p50 / Milvus direct p50", "<=", 1.3),
           ("http_p50_vs_in_process", "arcsearch HTTP p50 / in-process FAISS p50", "<=", 1.5))


def _num(value: float | None, digits: int = 1) -> str:
    return "–" if value is None or value != value else f"{value:,.{digits}f}"


def _param(row: dict[str, Any]) -> str:
    if row.get("param_name") is None:
        return "exact"
    return f"{row['param_name']}={row['param']}"


def table_rows(entry: dict[str, Any]) -> list[str]:
    """One markdown row per engine of one vector set; an engine that did not run says why."""
    label = f"{entry['size']:,} × {entry['dim']}"
    lines = []
    for row in entry["engines"]:
        if row["status"] != "ok":
            lines.append(f"| {label} | {row['engine']} | {row['status']}: {row['reason']} | | | | | | |")
            continue
        versus = (f"{row['p50_ms'] / row['reference_p50_ms']:.2f}×" if row.get("reference_p50_ms") else "1.00×")
        failures = f" ({row['load_failures']} failed)" if row.get("load_failures") else ""
        rss = row.get("rss_bytes")
        lines.append(f"| {label} | {row['engine']} | {_param(row)} | {_num(row['recall_at_k'], 3)} | "
                     f"{_num(row['p50_ms'], 2)} / {_num(row['p99_ms'], 2)} | {versus} | "
                     f"{_num(row['qps'], 0)}{failures} | {_num(row['build_s'], 1)} | "
                     f"{_num(rss / 2**20, 0) if rss else 'in the bench process'} |")
    return lines


def target_lines(entry: dict[str, Any]) -> list[str]:
    """The issue's targets on one vector set: measured ratio, met or missed (or why it is missing)."""
    lines = []
    for key, what, sense, bound in TARGETS:
        value = entry["ratios"].get(key)
        if value is None:
            lines.append(f"- {entry['size']:,}: {what}: not measured (an engine is missing)")
            continue
        met = value >= bound if sense == ">=" else value <= bound
        lines.append(f"- {entry['size']:,}: {what} = {value:.2f} (target {sense} {bound:.2f}: "
                     f"{'met' if met else 'missed'})")
    return lines


def format_report(report: dict[str, Any]) -> str:
    """The markdown table of every set, then the targets, then the versions."""
    lines = [HEADER.format(clients=report["clients"]), "|---|---|---|---|---|---|---|---|---|"]
    for entry in report["sets"]:
        lines += table_rows(entry)
    lines.append("")
    for entry in report["sets"]:
        lines += target_lines(entry)
    versions = ", ".join(f"{name} {version}" for name, version in report["machine"]["versions"].items() if version)
    load = report.get("load_average") or {}
    busy = (f" (load average {load['start'][0]:.1f} at the start, {load['end'][0]:.1f} at the end)" if load else "")
    lines += ["", f"k = {report['k']}, recall target {report['recall_target']}; {report['machine']['cpus']} CPUs"
              f"{busy}; {versions}", f"command: `{report['command']}`"]
    return "\n".join(lines) + "\n"


def write_report(report: dict[str, Any], path: Path) -> str:
    """Write the markdown report to ``path``; returns it."""
    text = format_report(report)
    path.write_text(text, encoding="utf-8")
    return text


def write_chart(report: dict[str, Any], path: Path) -> None:
    """A PNG: p50 latency at 1 client and QPS at N clients, one bar per engine, one group per vector set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (latency, throughput) = plt.subplots(1, 2, figsize=(12, 4.5))
    sets = report["sets"]
    names = list(dict.fromkeys(row["engine"] for entry in sets for row in entry["engines"] if row["status"] == "ok"))
    width = 0.8 / max(len(names), 1)
    for n, name in enumerate(names):
        p50 = [next((r["p50_ms"] for r in e["engines"] if r["engine"] == name and r["status"] == "ok"), 0)
               for e in sets]
        qps = [next((r["qps"] or 0 for r in e["engines"] if r["engine"] == name and r["status"] == "ok"), 0)
               for e in sets]
        positions = [i + (n - (len(names) - 1) / 2) * width for i in range(len(sets))]
        latency.bar(positions, p50, width, label=name)
        throughput.bar(positions, qps, width, label=name)
    for axis, title in ((latency, "p50 latency at 1 client, ms (log)"),
                        (throughput, f"QPS at {report['clients']} clients")):
        axis.set_xticks(range(len(sets)), [f"{e['size']:,} × {e['dim']}" for e in sets])
        axis.set_title(title)
    latency.set_yscale("log")
    throughput.legend(fontsize=8)
    figure.suptitle(f"Peers over their network APIs at recall@{report['k']} ≥ {report['recall_target']}")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
