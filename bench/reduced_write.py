"""Writing a release's reduced vectors to Parquet: the reducer's writer settings against
pyarrow's defaults (the path before them), same rows, same run.

Seeded normal fp32 rows of ``--dims`` (a PCA's output) with string ids like the catalog's, written
in batches of 65,536 rows to a temporary file as ``releases/reduce.py`` writes ``reduced.parquet``
(``id``, a fixed-size list ``vector``), by the ``WRITER`` settings it shares with the embedding
shards (``embeddings/shards.py``) and by the defaults (a dictionary tried on every page, min/max
kept for each), alternated round by round; each side's file is read back and must hold the same
vectors.

    .venv/bin/python bench/reduced_write.py --rows 1000000 --dims 128 --rounds 3
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from _common import median, table, write_result
from _common.timing import alternated

BATCH = 65_536


def write(path: Path, ids: pa.Array, vectors: np.ndarray, options: dict[str, Any]) -> float:
    """Seconds to write every batch, as the reducer does."""
    dims = vectors.shape[1]
    schema = pa.schema([("id", pa.string()), ("vector", pa.list_(pa.float32(), dims))])
    started = time.perf_counter()
    with pq.ParquetWriter(path, schema, **options) as writer:
        for s in range(0, len(vectors), BATCH):
            column = pa.FixedSizeListArray.from_arrays(
                pa.array(vectors[s : s + BATCH].ravel()), dims
            )
            writer.write_table(pa.table([ids[s : s + BATCH], column], schema=schema))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dims", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    from embedlake.embeddings.shards import WRITER

    vectors = np.random.default_rng(0).standard_normal((args.rows, args.dims), dtype=np.float32)
    ids = pa.array([f"doc-{i:010d}" for i in range(args.rows)])
    sides: dict[str, dict[str, Any]] = {"ours": WRITER, "pyarrow defaults (anchor)": {}}
    seconds: dict[str, list[float]] = {name: [] for name in sides}
    mib: dict[str, float] = {}
    same: dict[str, bool] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for name in alternated(list(sides), r):
                path = Path(tmp) / "reduced.parquet"
                seconds[name].append(write(path, ids, vectors, sides[name]))
                mib[name] = path.stat().st_size / 2**20
                back = pq.read_table(path).column("vector").combine_chunks()
                same[name] = bool(
                    np.array_equal(back.values.to_numpy().reshape(-1, args.dims), vectors)
                )
                path.unlink()
                print(f"  {name:<26} {seconds[name][-1]:6.2f} s", flush=True)
    print(
        table(
            ["side", "median s", "MiB/s", "file MiB", "read back equal"],
            [[n, median(s), mib[n] / median(s), mib[n], same[n]] for n, s in seconds.items()],
        )
    )
    anchor = seconds["pyarrow defaults (anchor)"]
    speedup = median([a / o for a, o in zip(anchor, seconds["ours"], strict=True)])
    print(f"ours ÷ anchor: {speedup:.2f}× faster (median of rounds)")
    result: dict[str, Any] = {
        "rows": args.rows,
        "dims": args.dims,
        "writer": WRITER,
        "seconds": seconds,
        "file_mib": mib,
        "read_back_equal": same,
        "speedup": speedup,
    }
    write_result("reduced_write", result)


if __name__ == "__main__":
    main()
