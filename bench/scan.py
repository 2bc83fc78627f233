"""Exact search at memory speed: fp32, int8 and binary scans of the ``exact`` engine.

N clustered unit vectors of dim 384 (1,000 seeded centres, noise as large as the centre; generated
in chunks), searched through ``ExactIndex.search``. Measured in the same run:

- the read bandwidth: ``np.bitwise_or.reduce`` over the fp32 matrix viewed as uint64 (1.5 GB at
  the default N, far beyond the caches), a streaming read with one OR per 8 bytes; best of 5, on
  one thread and on two (each thread half of the matrix), and once again before each timed query;
- single-query exact search (k = 10) on one thread, as bytes of vectors or codes scanned per
  second ÷ the one-thread read bandwidth: ``--rounds`` rounds of one read of the matrix and one
  query back to back (so both see the same load), the median of the rounds' ratios: fp32, int8 and
  binary, with rescoring off and at the default
  ``rescore`` 10 (whose re-read fp32 rows are not counted). Target ≥ 0.7 for fp32 and int8;
- batched exact search (``--batch`` queries, fp32) as GFLOP/s ÷ the GFLOP/s of a square sgemm
  (NumPy/BLAS, 4096 × 4096, best of 3) on the same threads. Target ≥ 0.5;
- recall@10 of int8 and binary against fp32, with and without rescoring, on these vectors and on
  the MiniLM vectors of npl (11,429 documents, 93 queries; cached by ``bench/ann.py``), and the
  bytes each vector keeps in memory.

    .venv/bin/python bench/scan.py [--n 1000000] [--batch 1024] [--threads 1,2]
"""

from __future__ import annotations

import argparse
import threading
import time
from typing import Any

import faiss
import numpy as np
from threadpoolctl import threadpool_limits

from embedlake.evaluate.metrics import ann_recall
from embedlake.index.exact import ExactIndex

from _common import median, table, write_result
from _common.timing import best_of
from _common.vectors import npl_vectors

DIM, K = 384, 10
SCAN_TARGET, GEMM_TARGET = 0.7, 0.5
BYTES = {"none": 4 * DIM, "int8": DIM, "binary": DIM / 8}


def clustered(n: int, seed: int = 0, chunk: int = 100_000) -> np.ndarray:
    """Unit vectors around 1,000 seeded centres; the queries are the last rows (same centres)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((1000, DIM), dtype=np.float32)
    out = np.empty((n, DIM), dtype=np.float32)
    for start in range(0, n, chunk):
        size = min(chunk, n - start)
        x = centres[rng.integers(0, 1000, size)] + rng.standard_normal((size, DIM), np.float32)
        out[start : start + size] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def read_bandwidth(buffer: np.ndarray, threads: int, reps: int = 5) -> float:
    """Bytes per second of a streaming OR-reduction over ``buffer`` split among ``threads``."""
    words = buffer.reshape(-1).view(np.uint64)
    parts = np.array_split(words, threads)

    def run() -> None:  # NumPy releases the GIL inside the reduction
        workers = [threading.Thread(target=np.bitwise_or.reduce, args=(p,)) for p in parts]
        for w in workers:
            w.start()
        for w in workers:
            w.join()

    return words.nbytes / best_of(run, reps)


def sgemm_gflops() -> float:
    rng = np.random.default_rng(1)
    a = rng.standard_normal((4096, 4096), dtype=np.float32)
    b = rng.standard_normal((4096, 4096), dtype=np.float32)
    return 2 * 4096**3 / best_of(lambda: a @ b, 3) / 1e9


def ids_of(rows: list[list[tuple[str, float]]]) -> list[list[str]]:
    return [[d for d, _ in row] for row in rows]


def recall_rows(name: str, docs: np.ndarray, queries: np.ndarray) -> list[dict[str, Any]]:
    ids = [str(i) for i in range(len(docs))]
    exact = ExactIndex(DIM)
    exact.add(ids, docs)
    truth = ids_of(exact.search(queries, K))
    del exact
    rows = []
    for quantization in ("int8", "binary"):
        index = ExactIndex(DIM, quantization=quantization)
        index.add(ids, docs)
        for rescore in (0, 2, 10, 20, 50):
            index.rescore = rescore
            got = ann_recall(ids_of(index.search(queries, K)), truth)
            rows.append(
                {"set": name, "quantization": quantization, "rescore": rescore, "recall": got}
            )
            print(f"  recall@10 {name} {quantization} rescore {rescore}: {got:.4f}", flush=True)
    return rows


def single_queries(docs: np.ndarray, queries: np.ndarray, rounds: int) -> list[dict[str, Any]]:
    """One query at a time on one thread. Each round reads the matrix once (the bandwidth) and
    then runs one query, back to back, so that both see the same load on a shared machine; the
    claim is the median over rounds of (bytes scanned per second ÷ that round's bandwidth)."""
    ids = [str(i) for i in range(len(docs))]
    rows = []
    faiss.omp_set_num_threads(1)
    with threadpool_limits(1):
        for quantization in ("none", "int8", "binary"):
            index = ExactIndex(DIM, quantization=quantization)
            index.add(ids, docs)
            for rescore in (0, 10) if quantization != "none" else (0,):
                index.rescore = rescore
                index.search(queries[:1], K)  # warm
                scanned = len(docs) * BYTES[quantization]
                times, reads, ratios = [], [], []
                for r in range(rounds):
                    reads.append(read_bandwidth(docs, 1, reps=1))
                    begun = time.perf_counter()
                    index.search(queries[r % len(queries)][None, :], K)
                    times.append(time.perf_counter() - begun)
                    ratios.append(scanned / times[-1] / reads[-1])
                row = {
                    "quantization": quantization,
                    "rescore": rescore,
                    "ms": median(times) * 1e3,
                    "best_ms": min(times) * 1e3,
                    "gb_per_s": scanned / median(times) / 1e9,
                    "read_gb_per_s": median(reads) / 1e9,
                    "of_bandwidth": median(ratios),
                    "best_of_best_bandwidth": scanned / min(times) / max(reads),
                    "bytes_per_vector": BYTES[quantization],
                    "codes_bytes": index.codes_nbytes,
                }
                rows.append(row)
                print(f"  single query {quantization:<6} rescore {rescore:>2}: {row['ms']:.2f} ms, "
                      f"{row['gb_per_s']:.1f} GB/s, read {row['read_gb_per_s']:.1f} GB/s: "
                      f"{row['of_bandwidth']:.2f} of bandwidth (best/best "
                      f"{row['best_of_best_bandwidth']:.2f})", flush=True)  # fmt: skip
    return rows


def batched_queries(
    docs: np.ndarray, batch: np.ndarray, threads: list[int]
) -> list[dict[str, Any]]:
    """All of ``batch`` in one search (fp32): GFLOP/s against a square sgemm on the same threads."""
    index = ExactIndex(DIM)
    index.add([str(i) for i in range(len(docs))], docs)
    flops = 2 * len(batch) * len(docs) * DIM
    rows = []
    for t in threads:
        faiss.omp_set_num_threads(t)
        with threadpool_limits(t):
            anchor = sgemm_gflops()
            seconds = best_of(lambda: index.search(batch, K), 2)
        row = {
            "threads": t,
            "queries": len(batch),
            "seconds": seconds,
            "gflops": flops / seconds / 1e9,
            "sgemm_gflops": anchor,
            "of_sgemm": flops / seconds / 1e9 / anchor,
        }
        rows.append(row)
        print(f"  batched {len(batch)} queries, {t} thread(s): {seconds:.2f} s, "
              f"{row['gflops']:.1f} GFLOP/s; sgemm {anchor:.1f} GFLOP/s; "
              f"ratio {row['of_sgemm']:.2f}", flush=True)  # fmt: skip
    return rows


def report(single: list[dict], batched: list[dict], recall: list[dict]) -> None:
    """The three tables: single-query scans, batched search, recall@10."""
    print()
    print(table(
        ["quantization", "rescore", "ms", "GB/s scanned", "read GB/s", "÷ read bandwidth",
         "best ÷ best", "bytes/vector in memory"],
        [[r["quantization"], r["rescore"], r["ms"], r["gb_per_s"], r["read_gb_per_s"],
          r["of_bandwidth"], r["best_of_best_bandwidth"], r["bytes_per_vector"]] for r in single],
    ))  # fmt: skip
    print()
    print(table(
        ["batched queries", "threads", "s", "GFLOP/s", "sgemm GFLOP/s", "÷ sgemm"],
        [[r["queries"], r["threads"], r["seconds"], r["gflops"], r["sgemm_gflops"], r["of_sgemm"]]
         for r in batched],
    ))  # fmt: skip
    print()
    print(table(
        ["vectors", "quantization", "rescore", "recall@10"],
        [[r["set"], r["quantization"], r["rescore"], r["recall"]] for r in recall],
    ))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=1024, help="queries of the batched search")
    parser.add_argument("--threads", default="1,2", help="thread counts of the batched search")
    parser.add_argument("--queries", type=int, default=30, help="single queries timed")
    parser.add_argument("--rounds", type=int, default=30, help="read + query pairs per scan")
    parser.add_argument("--recall-queries", type=int, default=200)
    args = parser.parse_args()

    started = time.perf_counter()
    extra = max(args.batch, args.recall_queries, args.queries)
    vectors = clustered(args.n + extra)
    docs, queries = vectors[: args.n], vectors[args.n :]
    print(f"{args.n:,} × {DIM} vectors in {time.perf_counter() - started:.0f} s", flush=True)

    bandwidth = {t: read_bandwidth(docs, t) for t in (1, 2)}
    print(f"read bandwidth: {bandwidth[1] / 1e9:.1f} GB/s (1 thread), "
          f"{bandwidth[2] / 1e9:.1f} GB/s (2 threads)", flush=True)  # fmt: skip
    single = single_queries(docs, queries[: args.queries], args.rounds)
    threads = [int(t) for t in args.threads.split(",")]
    batched = batched_queries(docs, queries[: args.batch], threads)
    faiss.omp_set_num_threads(max(threads))
    recall = recall_rows("synthetic", docs, queries[: args.recall_queries])
    try:
        npl_docs, npl_queries = npl_vectors()
        recall += recall_rows("npl MiniLM", npl_docs, npl_queries)
    except Exception as exc:  # the real vectors are a bonus: report, do not fail
        print(f"  npl MiniLM vectors unavailable: {exc}")

    report(single, batched, recall)
    verdicts = {
        "scan_met": {
            r["quantization"]: r["of_bandwidth"] >= SCAN_TARGET
            for r in single
            if r["rescore"] == 0 and r["quantization"] in ("none", "int8")
        },
        "gemm_met": {r["threads"]: r["of_sgemm"] >= GEMM_TARGET for r in batched},
    }
    print(f"\n{verdicts}")
    write_result(
        "scan",
        {
            "n": args.n,
            "dim": DIM,
            "k": K,
            "read_bandwidth_bytes_per_s": {str(t): b for t, b in bandwidth.items()},
            "single": single,
            "batched": batched,
            "recall": recall,
            "verdicts": verdicts,
            "seconds": time.perf_counter() - started,
        },
    )


if __name__ == "__main__":
    main()
