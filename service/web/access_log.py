"""The access log without secrets: the token in a URL's path is replaced before a line is
written (``/manage/<token>`` becomes ``/manage/***``)."""

from __future__ import annotations

import logging
import re

# The URLs whose next path segment is a subscriber's secret token.
_TOKEN_PATH = re.compile(r"(/(?:manage|unsubscribe|confirm|feeds|feedback)/)[^/?#\s\"]+")


def redact_path(path: str) -> str:
    """``path`` with the token segment of a token URL replaced by ``***``."""
    return _TOKEN_PATH.sub(r"\1***", path)


class RedactTokens(logging.Filter):
    """A filter for ``uvicorn.access`` (and any logger whose records carry request paths):
    every string argument and the message have their token segments replaced."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                redact_path(arg) if isinstance(arg, str) else arg for arg in record.args
            )
        if isinstance(record.msg, str):
            record.msg = redact_path(record.msg)
        return True


def install(logger_name: str = "uvicorn.access") -> None:
    """Redact tokens in ``logger_name``'s records (once, however often it is called)."""
    logger = logging.getLogger(logger_name)
    if not any(isinstance(f, RedactTokens) for f in logger.filters):
        logger.addFilter(RedactTokens())
