"""LSA's encoding: its own term counting against scikit-learn's vectorizer, same model, same run.

bench/scale.py's synthetic documents (~1 KB of real sentences each): LSA (256 components, as
`embed --model lsa`) fitted on the first ``--fit`` of them, then ``--docs`` others encoded in
batches of 2,048 (an embedding shard), one thread, by ``LsaEncoder.encode`` (the terms counted by
C code) and by the anchor, the path before it: ``vectorizer.transform`` (scikit-learn's
``CountVectorizer`` loop over every token, then TF-IDF) times the same projection. The two
alternate round by round; their vectors must be equal bit for bit.

    .venv/bin/python bench/lsa_counts.py --docs 100000 --rounds 3
    .venv/bin/python bench/lsa_counts.py --docs 10240 --profile  # where an encode's time goes

``--profile``: no timing rounds; cProfile over ``LsaEncoder.encode`` of every batch, its functions
by their own time (what is left to speed up).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from scale import generate

from _common import median, table, write_result
from _common.timing import alternated

SHARD = 2048


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fit", type=int, default=20_000)
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="cProfile of our encode, no rounds")
    args = parser.parse_args()

    from embedlake.encoders import normalise
    from embedlake.encoders.lsa import LsaEncoder

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "docs.jsonl"
        generate(path, args.fit + args.docs, seed=3)
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    texts = [f"{r['title']} {r['text']}" for r in rows]
    fit, docs = texts[: args.fit], texts[args.fit :]
    batches = [docs[s : s + SHARD] for s in range(0, len(docs), SHARD)]
    with threadpool_limits(1):
        model = LsaEncoder.fit(fit, n_components=256, seed=0)

        def ours() -> np.ndarray:
            return np.vstack([model.encode(b) for b in batches])

        def anchor() -> np.ndarray:
            return np.vstack(
                [
                    normalise(np.asarray(model.vectorizer.transform(b) @ model.components.T))
                    for b in batches
                ]
            )

        if args.profile:
            profile = cProfile.Profile()
            profile.runcall(ours)
            pstats.Stats(profile).sort_stats("tottime").print_stats(12)
            return
        sides = {"ours": ours, "scikit-learn (anchor)": anchor}
        seconds: dict[str, list[float]] = {name: [] for name in sides}
        vectors: dict[str, np.ndarray] = {}
        for r in range(args.rounds):
            for name in alternated(list(sides), r):
                started = time.perf_counter()
                vectors[name] = sides[name]()
                seconds[name].append(time.perf_counter() - started)
                print(f"  {name:<22} {seconds[name][-1]:7.2f} s", flush=True)
    equal = bool(np.array_equal(vectors["ours"], vectors["scikit-learn (anchor)"]))
    rates = {name: args.docs / median(s) for name, s in seconds.items()}
    print(
        table(
            ["side", "median s", "docs/s"], [[n, median(s), rates[n]] for n, s in seconds.items()]
        )
    )
    speedup = median(
        [a / o for a, o in zip(seconds["scikit-learn (anchor)"], seconds["ours"], strict=True)]
    )
    print(
        f"ours ÷ anchor: {speedup:.2f}× faster (median of rounds); vectors equal bit for bit: {equal}"
    )
    result: dict[str, Any] = {
        "fit": args.fit,
        "docs": args.docs,
        "vocabulary": len(model.vectorizer.vocabulary_),
        "seconds": seconds,
        "docs_per_s": rates,
        "speedup": speedup,
        "equal": equal,
    }
    write_result("lsa_counts", result)


if __name__ == "__main__":
    main()
