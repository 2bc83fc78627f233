"""A stand-in for the Lambda runtime, run as ``python lambda_runner.py ROOT [BLOCKED,...]`` with
ROOT (an unpacked artifact) first on PYTHONPATH: it imports the entry points from ROOT only, then
answers one JSON request per stdin line, as a warm Lambda container answers invocations.

Request: ``{"entry": "ingest", "payload": {...}}`` → ``{"result": ...}`` or, as Lambda reports a
function error, ``{"errorType": "ConfigError", "errorMessage": "..."}``; ``{"probe": "api"}`` →
the identity of the container's API state (to show it is made once per container). BLOCKED names
top-level modules that may not be imported (what the light image does not install).
"""

from __future__ import annotations

import importlib
import importlib.abc
import json
import os
import sys
import time
import uuid
from typing import Any


class Blocked(importlib.abc.MetaPathFinder):
    def __init__(self, names: set[str]) -> None:
        self.names = names

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> None:
        if fullname.split(".")[0] in self.names:
            raise ImportError(f"{fullname} is not in this artifact (light image)")


class Context:
    def __init__(self, name: str) -> None:
        self.function_name = name
        self.aws_request_id = uuid.uuid4().hex
        self._deadline = time.monotonic() + 900

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def main() -> None:
    root, blocked = sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else ""
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything printed goes to stderr; stdout carries the replies only
    if blocked:
        sys.meta_path.insert(0, Blocked(set(blocked.split(","))))
    import embedlake

    if not os.path.realpath(embedlake.__file__).startswith(os.path.realpath(root) + os.sep):
        raise SystemExit(f"embedlake was imported from {embedlake.__file__}, not from {root}")
    handlers = importlib.import_module("embedlake.aws.handlers")
    from embedlake.aws import container

    for line in sys.stdin:
        request = json.loads(line)
        reply: dict[str, Any]
        if request.get("probe") == "api":
            box = container.container()
            reply = {"api": None if box.api is None else id(box.api)}
        else:
            try:
                entry = getattr(handlers, request["entry"])
                result = entry(request["payload"], Context(request["entry"]))
                reply = {"result": json.loads(json.dumps(result))}
            except Exception as exc:  # what Lambda reports as the invocation's error
                reply = {"errorType": type(exc).__name__, "errorMessage": str(exc)}
        replies.write(json.dumps(reply) + "\n")
    handlers.shutdown()


if __name__ == "__main__":
    main()
