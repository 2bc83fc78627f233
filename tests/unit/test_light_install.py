"""A search node installs embedlake without the `models` extra: no torch, no transformers (the
runtime side, serving without them, is tests/integration/test_release_forms.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TRAINING_STACK = {"torch", "transformers", "sentence-transformers", "onnx", "onnxscript"}


@pytest.mark.slow
def test_the_core_install_resolves_without_the_training_stack(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
         "--report", str(report), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    names = {i["metadata"]["name"].lower() for i in json.loads(report.read_text())["install"]}
    assert "embedlake" in names
    assert {"onnxruntime", "tokenizers", "model2vec", "faiss-cpu"} <= names  # serving forms, ANN
    assert names & TRAINING_STACK == set()
