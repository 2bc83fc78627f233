"""The CLI starts at once: `--help` and `status` load none of the numerical, model, server or
cloud libraries; the commands that use them import them in their own bodies.

Each command runs in a fresh interpreter, as a user runs it, and reports the modules it loaded
(time is measured in bench/cli_startup.py, not asserted here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

# Top-level packages that cost from a tenth of a second to seconds to import.
HEAVY = {
    "torch",
    "transformers",
    "sentence_transformers",
    "tokenizers",
    "onnx",
    "onnxruntime",
    "optimum",
    "model2vec",
    "sklearn",
    "scipy",
    "numpy",
    "pandas",
    "numba",
    "umap",
    "bm25s",
    "faiss",
    "hnswlib",
    "pyarrow",
    "duckdb",
    "fastapi",
    "starlette",
    "uvicorn",
    "httpx",
    "ray",
    "boto3",
    "botocore",
    "s3fs",
    "dbos",
}
# What opening a workspace needs: its settings (pydantic), catalog (SQLAlchemy) and lake (fsspec);
# `--help` needs none of them. Alembic only migrates: the schema check reads its table directly.
WORKSPACE = {"pydantic", "sqlalchemy", "fsspec"}

REPORT = """
import json, sys
from embedlake.cli.app import main
sys.argv = ["embedlake", *sys.argv[2:]]
try:
    main()
except SystemExit as exc:
    assert not exc.code, exc.code
with open(sys.argv_report, "w") as f:
    json.dump(sorted(sys.modules), f)
"""


def loaded(tmp_path: Path, *args: str) -> tuple[set[str], str]:
    """The modules `embedlake ARGS` loaded, and what it printed."""
    report = tmp_path / "modules.json"
    script = REPORT.replace("sys.argv_report", repr(str(report)))
    proc = subprocess.run(
        [sys.executable, "-c", script, str(report), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return set(json.loads(report.read_text())), proc.stdout


def test_help_loads_no_heavy_library(tmp_path: Path) -> None:
    modules, out = loaded(tmp_path, "--help")
    assert "status" in out and "demo" in out  # every command is listed
    assert packages(modules) & (HEAVY | WORKSPACE | {"alembic"}) == set()
    # of embedlake itself, only the CLI, the exception tree, the steps protocol and the CPU count
    ours = {m.split(".")[1] for m in modules if m.startswith("embedlake.")}
    assert ours <= {"cli", "errors", "steps", "machine"}, ours


def test_status_of_a_small_workspace_loads_only_its_settings_library(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    docs = tmp_path / "docs.jsonl"
    docs.write_text(
        "".join(json.dumps({"_id": str(n), "text": f"document {n}"}) + "\n" for n in range(3)),
        encoding="utf-8",
    )
    for setup in (("init", str(ws)), ("ingest", str(ws), str(docs))):
        done = subprocess.run(
            [sys.executable, "-m", "embedlake", *setup],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stderr
    modules, out = loaded(tmp_path, "status", str(ws), "--json")
    assert json.loads(out)["documents"] == 3
    # the embedded default's catalog is read with sqlite3 (catalog/peek.py): of the workspace's
    # libraries only its settings' pydantic is loaded
    assert packages(modules) & (HEAVY | WORKSPACE | {"alembic"}) == {"pydantic"}


def packages(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


def test_serving_modules_leave_the_fitting_libraries_to_the_code_that_fits() -> None:
    """The API, the searcher and the runtime's functions are imported by every process that serves
    or runs a release (a server, a worker, a Lambda's cold start); scikit-learn (with SciPy's
    statistics and pandas, over a second of CPU) is only for fitting PCA and LSA, and torch only
    for a model of its kind, each imported where it is used."""
    script = (
        "import json, sys\n"
        "import embedlake.api.app, embedlake.search.searcher, embedlake.functions.builtin\n"
        "import embedlake.releases.build, embedlake.models.resolve, embedlake.reduce.store\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    modules = packages(set(json.loads(proc.stdout)))
    assert (
        modules & {"sklearn", "pandas", "torch", "transformers", "sentence_transformers"} == set()
    )
