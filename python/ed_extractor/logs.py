"""Logging set-up: readable lines on a terminal, else one JSON object per event (always stderr)."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, Literal

LogFormat = Literal["auto", "json", "text"]
_STANDARD_ATTRS = frozenset(vars(logging.makeLogRecord({})))


class JsonLineFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message and any ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as a single JSON line."""
        event: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        event.update(
            (key, value) for key, value in vars(record).items() if key not in _STANDARD_ATTRS
        )
        if record.exc_info:
            event["exc"] = self.formatException(record.exc_info)
        return json.dumps(event, default=str)


class TextFormatter(logging.Formatter):
    """``LEVEL message key=value ...``: the ``extra`` fields after the message, for people."""

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as one readable line."""
        extras = " ".join(
            f"{key}={value}" for key, value in vars(record).items() if key not in _STANDARD_ATTRS
        )
        line = f"{record.levelname} {record.getMessage()}"
        return f"{line}  {extras}" if extras else line


def configure_logging(log_format: LogFormat = "auto", level: int = logging.INFO) -> bool:
    """Send the package's logs to stderr; return True when they are JSON lines."""
    use_json = log_format == "json" or (log_format == "auto" and not sys.stderr.isatty())
    handler = logging.StreamHandler(sys.stderr)
    if use_json:
        handler.setFormatter(JsonLineFormatter())
    else:
        handler.setFormatter(TextFormatter())
    logger = logging.getLogger("ed_extractor")
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False
    return use_json
