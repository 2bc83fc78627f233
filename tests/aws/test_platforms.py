"""The packaged requirements install where they will run: pip resolves each artifact's
requirements.txt for that system's wheels only (a dry run against the package index), so a
dependency without a wheel for it fails here instead of at `sam build` or `docker build`.

- zip/: Lambda's managed python3.11 runtime, Amazon Linux 2 (glibc 2.26);
- image/ and serve/: the images' base, Debian 12 with Python 3.11 (glibc 2.36). torch is installed
  from its own CPU index by the Dockerfile and is not in image/requirements.txt.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from embedlake.aws.package import IMAGE_GLIBC, ZIP_GLIBC, package, platforms
from embedlake.config import Settings, default_toml

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("platforms")
    (folder / "embedlake.toml").write_text(default_toml())
    out = folder / "build"
    package(Settings.load(folder, {"EMBEDLAKE_SERVING__TORCH_FREE": "true"}), out)
    return out


def resolve(requirements: Path, glibc_minor: int, report: Path) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
         "--target", str(report.parent / "target"), "--report", str(report),
         *(f"--platform={tag}" for tag in platforms(glibc_minor)),
         "--python-version", "3.11", "--implementation", "cp", "--only-binary=:all:",
         "-r", str(requirements)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )  # fmt: skip
    errors = [line for line in done.stderr.splitlines() if not line.startswith("WARNING")]
    assert done.returncode == 0, "\n".join(errors[-20:])
    return {i["metadata"]["name"].lower() for i in json.loads(report.read_text())["install"]}


def test_the_zip_installs_on_lambdas_python_runtime(build: Path, tmp_path: Path) -> None:
    names = resolve(build / "zip" / "requirements.txt", ZIP_GLIBC, tmp_path / "zip.json")
    assert {"sqlalchemy", "psycopg-binary", "s3fs", "dbos"} <= names
    assert names & {"torch", "onnxruntime", "faiss-cpu", "fastapi"} == set()


@pytest.mark.parametrize("artifact", ["image", "serve"])
def test_the_images_install_on_their_base(build: Path, tmp_path: Path, artifact: str) -> None:
    names = resolve(build / artifact / "requirements.txt", IMAGE_GLIBC, tmp_path / "image.json")
    assert {"faiss-cpu", "onnxruntime", "fastapi", "mangum", "awslambdaric"} <= names
    # the serve image is the light install: nothing of the training stack comes in by the back door
    training = {"torch", "transformers", "sentence-transformers", "onnx", "onnxscript"}
    assert (names & training == set()) == (artifact == "serve")
