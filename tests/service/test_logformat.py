"""ARCSEARCH_LOG_FORMAT=json: the formatter alone, and a live server whose every output line is one JSON object."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from arcsearch.service.logformat import JsonFormatter, TextFormatter
from arcsearch.service.observability import LOG_FORMAT
from tests.bundles import REPO
from tests.service.helpers import ServiceData, live_server, served_copy


def record(message: str, *args: object, exc_info: Any = None, **extra: Any) -> logging.LogRecord:
    made = logging.getLogRecordFactory()("tests.probe", logging.ERROR, __file__, 1, message, args, exc_info)
    for key, value in extra.items():
        setattr(made, key, value)
    return made


def test_a_record_with_an_exception_is_one_line_of_json() -> None:
    try:
        raise ValueError("bad thing\non two lines")
    except ValueError:
        failed = record("failed %d times", 3, exc_info=sys.exc_info(), status=500, path=Path("/x"))
    line = JsonFormatter().format(failed)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry | {"time": "", "exc_info": ""} == {"time": "", "level": "ERROR", "logger": "tests.probe",
                                                   "message": "failed 3 times", "request_id": "-", "status": 500,
                                                   "path": "/x", "exc_info": ""}
    assert entry["exc_info"].startswith("Traceback") and "ValueError: bad thing\non two lines" in entry["exc_info"]
    stamp = datetime.fromisoformat(entry["time"])
    assert stamp.utcoffset() == timedelta(0) and abs(time.time() - stamp.timestamp()) < 60


def test_extra_fields_never_replace_the_standard_ones() -> None:
    entry = json.loads(JsonFormatter().format(record("plain", level="fake", _private=1, color_message="\x1b[1m")))
    assert entry["level"] == "ERROR" and set(entry) == {"time", "level", "logger", "message", "request_id"}


@pytest.fixture(scope="module")
def json_server(service_data: ServiceData, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    log_path = tmp_path_factory.mktemp("json-server") / "server.log"
    collections = served_copy(service_data.collections_dir, log_path.with_name("collections"))  # one server per folder
    with live_server(collections, service_data.data_root, log_path, log_format="json",
                     jobs_db=str(log_path.with_name("jobs.sqlite"))) as (url, _):
        with httpx.Client(base_url=url, timeout=60) as http:
            ok = http.get("/v1/collections", headers={"X-Request-ID": "json-log-1"})
            missing = http.get("/v1/no/such%0Aforged", headers={"X-Request-ID": "json-log-2"})
        assert ok.status_code == 200 and missing.status_code == 422
        deadline = time.monotonic() + 10
        while "json-log-2" not in log_path.read_text():
            assert time.monotonic() < deadline, log_path.read_text()[-3000:]
            time.sleep(0.05)
    return {"log": log_path}


def test_every_line_of_a_json_server_is_a_json_object(json_server: dict[str, Any]) -> None:
    lines = json_server["log"].read_text().splitlines()
    entries = [json.loads(line) for line in lines if line.strip()]
    assert entries and all({"time", "level", "logger", "message", "request_id"} <= set(e) for e in entries)
    assert any(e["logger"] == "uvicorn.error" and "Application startup complete" in e["message"] for e in entries)


@pytest.mark.parametrize(("request_id", "path", "status"), [("json-log-1", "/v1/collections", 200),
                                                            ("json-log-2", "/v1/no/such%0Aforged", 422)])
def test_access_records_carry_their_fields_as_keys(json_server: dict[str, Any], request_id: str, path: str,
                                                   status: int) -> None:
    entries = [json.loads(line) for line in json_server["log"].read_text().splitlines() if line.strip()]
    access = [e for e in entries if e["logger"] == "arcsearch.access" and e["request_id"] == request_id]
    assert len(access) == 1, entries[-5:]
    assert (access[0]["level"], access[0]["method"], access[0]["path"], access[0]["status"]) == (
        "INFO", "GET", path, status)
    assert isinstance(access[0]["duration_ms"], float) and access[0]["duration_ms"] >= 0
    assert access[0]["message"].startswith(f"request method=GET path={path} status={status} ")


def test_text_lines_escape_control_characters_and_indent_tracebacks() -> None:
    formatter = TextFormatter(LOG_FORMAT)
    forged = record("job 1: item %s failed", "ok\n2025-01-01 00:00:00 INFO forged: \x1b[31mred\u2028")
    line = formatter.format(forged)
    assert "\n" not in line and "\x1b" not in line and "\u2028" not in line
    assert "ok\\n2025-01-01 00:00:00 INFO forged: \\x1b[31mred\\u2028" in line
    try:
        raise ValueError("bad id 'x\nFORGED LINE'")
    except ValueError:
        failed = record("failed", exc_info=sys.exc_info())
    lines = formatter.format(failed).split("\n")
    assert lines[0].endswith("failed") and len(lines) > 2
    assert all(line.startswith(" ") for line in lines[1:]), lines
    assert any(line.strip() == "FORGED LINE'" for line in lines)


def test_a_text_server_logs_a_forged_id_on_one_line(tmp_path: Path) -> None:
    """configure_logging installs the escaping formatter (a fresh process: pytest owns this one's logging)."""
    code = ("import logging; from arcsearch.service.logformat import configure_logging; "
            "from arcsearch.service.observability import install_log_record_factory; "
            "install_log_record_factory(); configure_logging('info', log_format='text'); "
            "logging.getLogger('x').warning('item %s failed', 'a\\nFORGED')")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, check=True)
    assert result.stderr.count("\n") == 1 and "item a\\nFORGED failed" in result.stderr, result.stderr
