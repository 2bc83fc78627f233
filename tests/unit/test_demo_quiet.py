"""The demo's screen shows only the demo: while cli.quiet.libraries_to_log runs, what libraries
print, warn, log or write from C code goes to the log file; the demo's console, its progress bars
and embedlake's own warnings reach the terminal."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = """
import logging, os, sys, warnings
from pathlib import Path
from rich.console import Console
from embedlake.cli.progress import working
from embedlake.cli.quiet import libraries_to_log

screen = Console(width=100)
with libraries_to_log(Path(sys.argv[1]), screen):
    with working(screen, "a step") as step:
        print("library print")
        warnings.warn("exporter advice")
        logging.getLogger("onnxruntime.quantization").warning("quantiser advice")
        handler = logging.StreamHandler()  # a library's own handler, made while a bar runs
        noisy = logging.getLogger("transformers")
        noisy.addHandler(handler)
        noisy.propagate = False
        noisy.warning("hub message")
        os.write(2, b"written by C code\\n")
        os.write(1, b"C code on stdout\\n")
    screen.print("the demo speaks")
    logging.getLogger("embedlake.releases.build").warning("a release was rejected")
print("after the demo")
"""

LIBRARIES = (
    "library print",
    "exporter advice",
    "quantiser advice",
    "hub message",
    "written by C code",
    "C code on stdout",
)


def test_library_output_goes_to_the_log_and_the_demo_to_the_terminal(tmp_path: Path) -> None:
    log = tmp_path / "ws" / "demo.log"
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(log)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    terminal = proc.stdout + proc.stderr
    for text in LIBRARIES:
        assert text not in terminal
        assert text in log.read_text()
    assert "the demo speaks" in proc.stdout
    assert "a release was rejected" in terminal  # embedlake's own warnings are the user's
    assert "after the demo" in proc.stdout  # the streams are back afterwards
