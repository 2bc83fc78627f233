"""BM25 built in bounded memory: the units are read once, a chunk at a time, and the index is
written to disk as bm25s's own files, which :meth:`Bm25.load` memory-maps.

bm25s builds its index from every document's tokens at once, as Python lists (6.8 GB for a
million passages of ~1 KB, bench/scale.py), so the corpus it can index is bounded by memory.
Here each chunk is tokenized by bm25s's own tokenizer, its (document, term, count) triples are
spilled to a temporary file, and the document frequencies are summed; a second pass over the
spilled triples scores them with bm25s's own formulas and writes each into its place in the
term-major (CSC) matrix, whose column sizes the frequencies already give. What stays in memory
is the vocabulary, one length per unit, and a chunk per process. Same scores as bm25s's own
build (tested): only the order of the vocabulary's ids may differ.

Tokenising (a regular expression, stop words and the stemmer, in Python) is most of the work and
holds the GIL: a corpus of more than one chunk is tokenised by a process per core, a few chunks
in flight, while this one reads the units and merges each chunk's vocabulary in order, so the
files are the same whatever the number of processes (tested).
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import tempfile
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from itertools import chain, islice
from pathlib import Path
from typing import IO, Any

import bm25s
import numpy as np
from bm25s.scoring import _build_idf_array, _select_idf_scorer, _select_tfc_scorer

from embedlake.errors import InputError
from embedlake.machine import cores
from embedlake.search.bm25 import IDS, Bm25, stemmer_for

log = logging.getLogger(__name__)

CHUNK = 20_000  # units tokenized at once: ~20 MB of text at 1 KB each, a few times that in tokens

# A chunk's tokens: its own vocabulary (term → local id), each unit's length in tokens, and its
# (unit within the chunk, local term, count) triples.
Tokens = tuple[dict[str, int], np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def build(
    units: Iterable[tuple[str, str]],
    folder: Path,
    *,
    stem: bool,
    chunk: int = CHUNK,
    processes: int | None = None,
) -> Bm25:
    """Index ``units`` (key, text) into ``folder`` and return the index, memory-mapped.
    ``processes`` tokenise (None: one per core); a single chunk is tokenised here."""
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
            chunks = _tokenized(_batches(units, chunk), stem, processes or cores())
            for keys, (local, sizes, docs, terms, counts) in chunks:
                _write_keys(ids, keys, first=n == 0)
                terms = _global_ids(local, vocab)[terms]
                lengths.append(sizes)
                df = _summed(df, np.bincount(terms, minlength=len(vocab)))
                parts.append(Path(spill) / f"{len(parts)}.npz")
                np.savez(parts[-1], docs=docs.astype(np.int64) + n, terms=terms, counts=counts)
                n += len(keys)
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


def _tokenized(
    batches: Iterator[list[tuple[str, str]]], stem: bool, processes: int
) -> Iterator[tuple[list[str], Tokens]]:
    """Each batch's keys and tokens, in order: tokenised here when there is one batch or one
    process, else by a pool of ``processes`` with at most ``processes + 1`` batches in flight
    (each holds its texts and then its triples: the bound on memory)."""
    first = list(islice(batches, 2))
    if processes < 2 or len(first) < 2:
        for batch in chain(first, batches):
            yield [key for key, _ in batch], chunk_tokens([text for _, text in batch], stem)
        return
    # spawned, not forked: this process may hold threads (BLAS, torch) that a fork would copy
    pool = ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn"))
    pending: deque[tuple[list[str], Future[Tokens]]] = deque()
    try:
        for batch in chain(first, batches):
            texts = [text for _, text in batch]
            pending.append(([key for key, _ in batch], pool.submit(chunk_tokens, texts, stem)))
            if len(pending) > processes:
                keys, done = pending.popleft()
                yield keys, done.result()
        while pending:
            keys, done = pending.popleft()
            yield keys, done.result()
    finally:  # an error (here or in a worker) leaves nothing queued behind it
        pool.shutdown(cancel_futures=True)


def chunk_tokens(texts: list[str], stem: bool) -> Tokens:
    """``texts`` tokenised by bm25s's tokenizer, as the chunk's triples (a worker's task)."""
    tokenized = bm25s.tokenize(
        texts, stopwords="en", stemmer=stemmer_for(stem), show_progress=False
    )
    sizes = np.fromiter(map(len, tokenized.ids), np.int64, len(tokenized.ids))
    flat = np.fromiter(chain.from_iterable(tokenized.ids), np.int64, int(sizes.sum()))
    unit = np.repeat(np.arange(len(texts), dtype=np.int64), sizes)
    width = max(tokenized.vocab.values(), default=0) + 1
    pairs, counts = np.unique(unit * width + flat, return_counts=True)
    return tokenized.vocab, sizes, pairs // width, pairs % width, counts


def _write_keys(out: IO[str], keys: list[str], *, first: bool) -> None:
    out.write(("" if first else ", ") + ", ".join(json.dumps(k) for k in keys))


def _global_ids(local: dict[str, int], vocab: dict[str, int]) -> np.ndarray:
    """The global id of each of a chunk's local term ids, new terms added to ``vocab`` in
    sorted order: bm25s numbers a chunk's terms in the order of a set, which differs from one
    process to the next (string hashing is salted), and the files must not."""
    out = np.zeros(max(local.values(), default=-1) + 1, dtype=np.int64)
    for term in sorted(local):
        out[local[term]] = vocab.setdefault(term, len(vocab))
    return out


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
