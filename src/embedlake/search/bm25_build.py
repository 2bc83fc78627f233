"""BM25 built in bounded memory: the units are read once, a chunk at a time, and the index is
written to disk as bm25s's own files, which :meth:`Bm25.load` memory-maps.

bm25s builds its index from every document's tokens at once, as Python lists (6.8 GB for a
million passages of ~1 KB, bench/scale.py), so the corpus it can index is bounded by memory.
Here each chunk is tokenized by bm25s's own tokenizer, its (document, term, count) triples are
spilled to a temporary file, and the document frequencies are summed; a second pass over the
spilled triples scores them with bm25s's own formulas and writes each into its place in the
term-major (CSC) matrix, whose column sizes the frequencies already give. What stays in memory
is the vocabulary, one length per unit, and one chunk. Same scores as bm25s's own build
(tested): only the order of the vocabulary's ids may differ.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Iterable, Iterator
from itertools import chain, islice
from pathlib import Path
from typing import IO, Any

import bm25s
import numpy as np
from bm25s.scoring import _build_idf_array, _select_idf_scorer, _select_tfc_scorer

from embedlake.errors import InputError
from embedlake.search.bm25 import IDS, Bm25, stemmer_for

log = logging.getLogger(__name__)

CHUNK = 20_000  # units tokenized at once: ~20 MB of text at 1 KB each, a few times that in tokens


def build(
    units: Iterable[tuple[str, str]], folder: Path, *, stem: bool, chunk: int = CHUNK
) -> Bm25:
    """Index ``units`` (key, text) into ``folder`` and return the index, memory-mapped."""
    folder.mkdir(parents=True, exist_ok=True)
    retriever = bm25s.BM25()
    if retriever.method in retriever.methods_requiring_nonoccurrence:
        raise AssertionError(f"bm25s method {retriever.method} needs a non-occurrence array")
    vocab: dict[str, int] = {}
    lengths: list[np.ndarray] = []
    df = np.zeros(0, dtype=np.int64)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".spill-") as spill:
        parts: list[Path] = []
        with (folder / IDS).open("w", encoding="utf-8") as ids:
            ids.write(f'{{"stem": {json.dumps(stem)}, "ids": [')
            n = 0
            for batch in _batches(units, chunk):
                _write_keys(ids, [key for key, _ in batch], first=n == 0)
                tokens = bm25s.tokenize(
                    [text for _, text in batch],
                    stopwords="en",
                    stemmer=stemmer_for(stem),
                    show_progress=False,
                )
                docs, terms, counts = _triples(tokens.ids, _global_ids(tokens.vocab, vocab), n)
                lengths.append(np.fromiter(map(len, tokens.ids), np.int64, len(tokens.ids)))
                df = _summed(df, np.bincount(terms, minlength=len(vocab)))
                parts.append(Path(spill) / f"{len(parts)}.npz")
                np.savez(parts[-1], docs=docs, terms=terms, counts=counts)
                n += len(batch)
            ids.write("]}")
        if n == 0:
            raise InputError("BM25: no documents to index")
        vocab.setdefault("", len(vocab))  # bm25s's empty token: what a query of stop words gets
        df = _summed(df, np.zeros(len(vocab), dtype=np.int64))
        _score(retriever, parts, vocab, df, np.concatenate(lengths), Path(spill))
        retriever.save(str(folder), show_progress=False)
    log.info("BM25: %d units, %d terms, %d postings", n, len(vocab), int(df.sum()))
    return Bm25.load(folder, mmap=True)


def _batches(units: Iterable[tuple[str, str]], size: int) -> Iterator[list[tuple[str, str]]]:
    it = iter(units)
    while batch := list(islice(it, size)):
        yield batch


def _write_keys(out: IO[str], keys: list[str], *, first: bool) -> None:
    out.write(("" if first else ", ") + ", ".join(json.dumps(k) for k in keys))


def _global_ids(local: dict[str, int], vocab: dict[str, int]) -> np.ndarray:
    """The global id of each of a chunk's local term ids, new terms added to ``vocab``."""
    out = np.zeros(max(local.values(), default=-1) + 1, dtype=np.int64)
    for term, i in local.items():
        out[i] = vocab.setdefault(term, len(vocab))
    return out


def _triples(
    ids: list[list[int]], to_global: np.ndarray, offset: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(unit, term, count) of every term of every unit, units numbered from ``offset``."""
    sizes = np.fromiter(map(len, ids), np.int64, len(ids))
    flat = to_global[np.fromiter(chain.from_iterable(ids), np.int64, int(sizes.sum()))]
    unit = np.repeat(np.arange(offset, offset + len(ids), dtype=np.int64), sizes)
    width = int(to_global.max(initial=0)) + 1
    pairs, counts = np.unique(unit * width + flat, return_counts=True)
    return pairs // width, pairs % width, counts


def _summed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a + b`` for two count arrays of possibly different lengths."""
    out = np.zeros(max(len(a), len(b)), dtype=np.int64)
    out[: len(a)] += a
    out[: len(b)] += b
    return out


def _score(
    retriever: Any,
    parts: list[Path],
    vocab: dict[str, int],
    df: np.ndarray,
    lengths: np.ndarray,
    spill: Path,
) -> None:
    """Score the spilled triples into the term-major matrix, set on ``retriever`` to be saved."""
    n = len(lengths)
    idf = _build_idf_array(
        dict(enumerate(df.tolist())), n, _select_idf_scorer(retriever.idf_method), retriever.dtype
    )
    tfc = _select_tfc_scorer(retriever.method)
    average = lengths.mean()
    indptr = np.zeros(len(vocab) + 1, dtype=np.int64)
    np.cumsum(df, out=indptr[1:])
    nnz = int(indptr[-1])
    index_type = np.int32 if max(nnz, n) < 2**31 else np.int64  # as scipy's CSC chooses
    data = np.lib.format.open_memmap(spill / "data.npy", "w+", retriever.dtype, (nnz,))
    rows = np.lib.format.open_memmap(spill / "indices.npy", "w+", retriever.int_dtype, (nnz,))
    cursor = indptr[:-1].copy()  # where each term's next posting goes
    for part in parts:
        with np.load(part) as spilled:
            order = np.argsort(spilled["terms"], kind="stable")  # units stay in order per term
            terms, docs = spilled["terms"][order], spilled["docs"][order]
            counts = spilled["counts"][order].astype(retriever.dtype)
        score = idf[terms] * tfc(
            tf_array=counts,
            l_d=lengths[docs],
            l_avg=average,
            k1=retriever.k1,
            b=retriever.b,
            delta=retriever.delta,
        )
        first, starts, sizes = np.unique(terms, return_index=True, return_counts=True)
        place = cursor[terms] + np.arange(len(terms)) - np.repeat(starts, sizes)
        data[place] = score
        rows[place] = docs
        cursor[first] += sizes
        part.unlink()
    retriever.scores = {
        "data": data,
        "indices": rows,
        "indptr": indptr.astype(index_type),
        "num_docs": n,
    }
    retriever.vocab_dict = vocab
    retriever.nonoccurrence_array = None  # lucene scoring has none (checked in build)
