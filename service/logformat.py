r"""The server's log output, ``ARCSEARCH_LOG_FORMAT``: text lines (``LOG_FORMAT``) or one JSON object a line.

Text lines are safe to read whatever a client sent: control characters in a record (an item id with a
newline, say) are escaped (``\n``, ``\x1b``), so one record is one line; a traceback keeps its lines,
each indented, so that no line it adds can pass for a record of its own.

A JSON line holds ``time`` (ISO 8601, UTC), ``level``, ``logger``, ``message``, ``request_id``, every
field the log call passed with ``extra=`` (the access lines: ``method``, ``path``, ``status``,
``duration_ms``), and ``exc_info`` / ``stack_info`` as strings::

    {"time": "2025-01-01T12:00:00.123+00:00", "level": "INFO", "logger": "arcsearch.access", "message": "request
     method=GET ...", "request_id": "4f0c...", "method": "GET", "path": "/v1/collections", "status": 200, ...}
"""

from __future__ import annotations

import json
import logging
import os
import re
from datetime import UTC, datetime
from typing import Any, Literal

from uvicorn.config import LOGGING_CONFIG

from arcsearch.service.observability import LOG_FORMAT

LogFormat = Literal["text", "json"]
# attributes every LogRecord has (not ``extra=`` fields), and uvicorn's ANSI-coloured copy of its message
RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "request_id", "color_message"}


CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")  # all but tab; lone surrogates
TRACEBACK_INDENT = "  "


def escape_controls(text: str) -> str:
    r"""``text`` with every control character but tab, and any lone surrogate, written as its escape (``\n``,
    ``\x1b``, ``\u2028``)."""
    return CONTROL.sub(lambda found: found.group().encode("unicode_escape").decode("ascii"), text)


class TextFormatter(logging.Formatter):
    """``LOG_FORMAT`` lines: the record on one line (controls escaped), a traceback on indented lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's naming)
        return escape_controls(super().formatMessage(record))

    def formatException(self, ei: Any) -> str:  # noqa: N802
        return self._indented(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:  # noqa: N802
        return self._indented(super().formatStack(stack_info))

    @staticmethod
    def _indented(text: str) -> str:
        return "\n".join(TRACEBACK_INDENT + escape_controls(line) for line in text.split("\n"))


class JsonFormatter(logging.Formatter):
    """Formats a record as one line of JSON (values that JSON cannot hold are written as ``str``)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname, "logger": record.name, "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "-")}
        for key, value in vars(record).items():
            if key not in RECORD_ATTRIBUTES and not key.startswith("_"):
                entry.setdefault(key, value)
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc_info"] = record.exc_text
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str, *, log_format: LogFormat) -> None:
    """Log to stderr at ``level`` in ``log_format``, unless the root logger already has handlers.

    With ``json``, warnings go through logging too and Hugging Face progress bars are off (unless
    ``HF_HUB_DISABLE_PROGRESS_BARS`` says otherwise; set before the text embedders' libraries load), so
    every line of the output is one JSON object.
    """
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter(LOG_FORMAT))
    root.addHandler(handler)
    root.setLevel(level.upper())
    if log_format == "json":
        logging.captureWarnings(True)
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def uvicorn_log_config(log_format: LogFormat) -> dict[str, Any]:
    """uvicorn's logging setup: its own for ``text`` (as before); for ``json`` its records go to our handler."""
    if log_format == "text":
        return LOGGING_CONFIG
    return {"version": 1, "disable_existing_loggers": False,
            "loggers": {"uvicorn": {"handlers": [], "propagate": True},
                        "uvicorn.access": {"handlers": [], "propagate": False}}}
