"""The OpenAPI document states every rule the server enforces: schemathesis, driven by the document alone
(all checks, the stateful phase included), finds no mismatch against a live uvicorn server.

The server runs with an admin key, so the mutating operations (re-index, items, collections, job cancel)
are exercised too, on a throwaway copy of the test collections. The run is bounded by examples per
operation (and a seed, so a failure reproduces); it takes about a minute or two on 2 cores.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.service.helpers import ServiceData, live_server, served_copy

ADMIN_KEY = "conformance-admin-key-0123456789"
MAX_EXAMPLES = 12  # per operation and phase
SEED = int(os.environ.get("CONFORMANCE_SEED", "20240601"))  # another seed explores other examples
RUN_TIMEOUT_S = 600.0
PHASES = "examples,coverage,fuzzing,stateful"
CONFIG = Path(__file__).with_name("schemathesis.toml")


def schemathesis_run(url: str, report_dir: Path) -> subprocess.CompletedProcess[str]:
    """``st run`` on the server's own /openapi.json with every check; its JSON report lands in ``report_dir``.
    It runs in ``report_dir``'s parent, so its cache of earlier failures (``.schemathesis/``, replayed first)
    stays out of the repository and each run starts from the seed alone."""
    command = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(CONFIG), "run", f"{url}/openapi.json",
               "--checks", "all", "--phases", PHASES, "--max-examples", str(MAX_EXAMPLES), "--seed", str(SEED),
               "--workers", "1", "-H", f"Authorization: Bearer {ADMIN_KEY}", "--request-timeout", "60", "--no-color",
               "--report", "json", "--report-dir", str(report_dir), "--suppress-health-check", "all"]
    return subprocess.run(command, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False,
                          cwd=report_dir.parent)


def test_schemathesis_finds_no_mismatch_between_the_openapi_document_and_the_server(
        service_data: ServiceData, tmp_path: Path) -> None:
    collections = served_copy(service_data.collections_dir, tmp_path / "collections")
    with live_server(collections, service_data.data_root, tmp_path / "server.log", admin_keys=ADMIN_KEY,
                     batch_size="8") as (url, _):
        result = schemathesis_run(url, tmp_path / "report")
    output = result.stdout + result.stderr
    reports = list((tmp_path / "report").glob("*.json"))
    assert len(reports) == 1, output[-4000:]
    report = json.loads(reports[0].read_text())
    assert report["complete"] and report["operations"]["tested"] == report["operations"]["total"], output[-4000:]
    assert set(report["phases"]) >= set(PHASES.split(",")), report["phases"]
    assert report["test_cases"]["generated"] > 0, output[-4000:]
    # zero failures of any check, zero errors (a crash of a test case, or a 5xx counts among these)
    assert report["failures"] == [] and report["errors"] == [], output[-20000:]
    assert report["test_cases"]["with_failures"] == 0 and report["test_cases"]["errored"] == 0, output[-20000:]
    assert result.returncode == 0 and "Server error" not in output, output[-20000:]
