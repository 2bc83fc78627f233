"""Keep libraries' own output off the terminal: the demo's screen shows only the demo.

Exporters (torch.onnx, optimum), quantisers (onnxruntime), model hubs (transformers, huggingface
hub) and the C code under them talk on stdout and stderr, through ``print``, ``warnings``,
``logging`` and tqdm bars. While :func:`libraries_to_log` runs, all of that goes to a log file in
the workspace (at the level of the file descriptors too, since C code writes there), and the
console the caller draws on keeps the terminal.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TextIO

from rich.console import Console

from embedlake.cli.output import fileno

# Read by the libraries when they are imported or start a bar; the demo imports them later.
QUIET_ENVIRONMENT = {
    "TQDM_DISABLE": "1",  # tqdm reads TQDM_* when it is imported
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "TOKENIZERS_PARALLELISM": "false",  # else a warning when the process forks after use
}


@contextmanager
def libraries_to_log(log_file: Path, console: Console) -> Iterator[None]:
    """Route warnings, log records, prints and file-descriptor output to ``log_file`` while the
    block runs; ``console`` (and a progress bar drawn on it) writes to the terminal meanwhile.
    embedlake's own warnings still reach the terminal, through ``console``."""
    for key, value in QUIET_ENVIRONMENT.items():
        os.environ.setdefault(key, value)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        log = stack.enter_context(log_file.open("a", encoding="utf-8", buffering=1))
        stack.enter_context(_logging_to(log, console))
        stack.enter_context(_descriptors_to(log, console))
        yield


@contextmanager
def _logging_to(log: TextIO, console: Console) -> Iterator[None]:
    from rich.logging import RichHandler

    root, ours = logging.getLogger(), logging.getLogger("embedlake")
    saved = (root.handlers[:], root.level, ours.handlers[:], ours.propagate)
    handler = logging.StreamHandler(log)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    terminal = RichHandler(console=console, show_path=False, level=logging.WARNING)
    root.handlers, root.level = [handler], logging.INFO
    ours.handlers = [handler, terminal]
    ours.propagate = False
    logging.captureWarnings(True)  # warnings.warn → the "py.warnings" logger → the file
    try:
        yield
    finally:
        logging.captureWarnings(False)
        root.handlers, root.level, ours.handlers, ours.propagate = saved


@contextmanager
def _descriptors_to(log: TextIO, console: Console) -> Iterator[None]:
    """Point file descriptors 1 and 2 at the log, keeping a copy of the terminal for ``console``
    (where the streams have no descriptor, as under a test runner, Python's streams only)."""
    sys.stdout.flush()
    sys.stderr.flush()
    fds = [fd for fd in (fileno(sys.stdout), fileno(sys.stderr)) if fd is not None]
    previous = console.file
    if len(fds) < 2:
        stdout, stderr = sys.stdout, sys.stderr
        console.file = stdout
        sys.stdout = sys.stderr = log
        try:
            yield
        finally:
            sys.stdout, sys.stderr = stdout, stderr
            console.file = previous
        return
    saved = [os.dup(fd) for fd in fds]
    terminal = os.fdopen(os.dup(saved[0]), "w", encoding="utf-8", buffering=1)
    for fd in fds:
        os.dup2(log.fileno(), fd)
    console.file = terminal
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        console.file = previous
        terminal.close()
        for fd, copy in zip(fds, saved, strict=True):
            os.dup2(copy, fd)
            os.close(copy)
