"""Structured logs: every record written while an invocation runs carries its ids."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime

_ids: ContextVar[dict[str, str]] = ContextVar("embedlake-invocation", default={})  # noqa: B039


@contextmanager
def invocation_ids(**ids: str) -> Iterator[None]:
    token = _ids.set({**_ids.get(), **ids})
    try:
        yield
    finally:
        _ids.reset(token)


class InvocationFilter(logging.Filter):
    """Copies the current invocation's ids (function, invocation, event) onto each record."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _ids.get().items():
            setattr(record, key, value)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message and the invocation's ids."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("function", "invocation", "event"):
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure(fmt: str, level: int = logging.INFO) -> None:
    handler = logging.StreamHandler()
    handler.addFilter(InvocationFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
        )
    logging.basicConfig(level=level, handlers=[handler], force=True)
    for noisy in ("bm25s", "sentence_transformers", "transformers", "faiss", "dbos"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
