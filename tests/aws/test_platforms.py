"""The packaged requirements install where they will run: pip resolves each image's
requirements.txt for its base's wheels only (Debian 12 with Python 3.11, glibc 2.36; a dry run
against the package index), so a dependency without a wheel there fails here instead of at
`docker build`. torch is installed from its own CPU index by the Dockerfile and is not in
image/requirements.txt."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from embedlake.aws.package import IMAGE_GLIBC, package
from embedlake.config import Settings, default_toml

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("platforms")
    (folder / "embedlake.toml").write_text(default_toml())
    out = folder / "build"
    package(Settings.load(folder, {"EMBEDLAKE_SERVING__TORCH_FREE": "true"}), out)
    return out


def platforms(glibc_minor: int) -> list[str]:
    """pip's ``--platform`` tags for x86_64 Linux with glibc 2.<minor>: pip does not widen a tag to
    the older ones a system also runs, so every one is named."""
    legacy = ["manylinux1_x86_64", "manylinux2010_x86_64", "manylinux2014_x86_64"]
    return legacy + [f"manylinux_2_{m}_x86_64" for m in range(5, glibc_minor + 1)]


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


@pytest.mark.parametrize("artifact", ["image", "light"])
def test_the_images_install_on_their_base(build: Path, tmp_path: Path, artifact: str) -> None:
    names = resolve(build / artifact / "requirements.txt", IMAGE_GLIBC, tmp_path / "image.json")
    assert {"faiss-cpu", "onnxruntime", "fastapi", "mangum", "awslambdaric"} <= names
    assert "boto3" in names  # called by embedlake itself, and not in Debian's Python
    assert "openvino" in names  # the default serving.forms name openvino forms (decision 0021)
    # the light image: nothing of the training stack comes in by the back door
    training = {"torch", "transformers", "sentence-transformers", "onnx", "onnxscript"}
    assert (names & training == set()) == (artifact == "light")
