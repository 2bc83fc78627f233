"""The embed stage as a user runs it (``embedlake embed WS --model lsa``): this tree against
another commit, same corpus, same run.

bench/scale.py's synthetic documents (~1 KB of real sentences each) are ingested once into a
workspace; each round, each side embeds its own fresh copy of it, the CLI in its own process (a
worker process per core, as the default does), from this tree or, with ``--against REV``, from a
checkout of ``REV`` (a git worktree first on ``PYTHONPATH``), the two alternated round by round.
Reported: wall seconds and peak RSS (bench/scale.py's ``measured``), and the ratio, the median of
the rounds' ratios. The stage is the whole of it: LSA's fit on its sample, the plan, every shard.

    .venv/bin/python bench/embed_stage.py --docs 300000 --against d9bc37a --rounds 2
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import tempfile
from pathlib import Path
from typing import Any

from scale import EMBEDLAKE, generate, measured

from _common import median, table, write_result
from _common.timing import alternated
from _common.trees import env_for, worktree


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=300_000)
    parser.add_argument("--against", default="HEAD~1", help="the other side's git revision")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        root = Path(tmp)
        log = root / "embed.log"
        trees: dict[str, Path | None] = {
            "this": None,
            "before": stack.enter_context(worktree(args.against)),
        }
        generate(root / "docs.jsonl", args.docs, seed=0)
        base = root / "ws"
        measured([*EMBEDLAKE, "init", str(base)], log)
        measured([*EMBEDLAKE, "ingest", str(base), str(root / "docs.jsonl")], log)
        (root / "docs.jsonl").unlink()
        runs: dict[str, list[dict[str, Any]]] = {side: [] for side in trees}
        for r in range(args.rounds):
            for side in alternated(list(trees), r):
                ws = root / f"ws-{side}"
                shutil.copytree(base, ws)
                cmd = [*EMBEDLAKE, "embed", str(ws), "--model", "lsa", "--json"]
                got = measured(cmd, log, env=env_for(trees[side]))
                shutil.rmtree(ws)
                run = {k: got[k] for k in ("seconds", "peak_mib", "tree_peak_mib")}
                runs[side].append(run)
                print(f"  {side:<7} {run}", flush=True)
    seconds = {side: [run["seconds"] for run in rs] for side, rs in runs.items()}
    print(
        table(
            ["side", "median s", "docs/s", "peak MiB (largest process)", "all processes' MiB"],
            [
                [
                    side,
                    median(seconds[side]),
                    args.docs / median(seconds[side]),
                    max(run["peak_mib"] for run in rs),
                    max(run["tree_peak_mib"] for run in rs),
                ]
                for side, rs in runs.items()
            ],
        )
    )
    speedup = median([b / t for b, t in zip(seconds["before"], seconds["this"], strict=True)])
    print(f"embed stage: before ÷ this = {speedup:.2f}× (median of rounds)")
    payload = {"docs": args.docs, "against": args.against, "runs": runs, "speedup": speedup}
    write_result(f"embed_stage_{args.docs}", payload)


if __name__ == "__main__":
    main()
