"""Log records as JSON, one object a line, for log collectors (``log_format = "json"``).

A log call gives context with ``extra=`` (see ``FIELDS``); it becomes fields of their own, so a
collector can filter by source, subscriber or delivery without parsing messages. What is logged
is already free of secrets (tokens are redacted by the access log's filter, passwords never
logged, mail bodies never logged); this only changes the shape.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

# The context a log call may carry with ``extra={...}``, kept as fields of the object.
FIELDS = ("source", "subscriber_id", "delivery_id")


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ISO 8601), level, logger, message, the context
    fields the call gave, and the traceback of an exception logged with it."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        # One line whatever the message holds: json.dumps escapes newlines.
        return json.dumps(entry, ensure_ascii=False, default=str)


def use_json(logger: logging.Logger | None = None) -> None:
    """Format every handler of ``logger`` (the root logger by default) as JSON."""
    for handler in (logger or logging.getLogger()).handlers:
        handler.setFormatter(JsonFormatter())
