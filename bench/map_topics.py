"""The map's topic labels: time to fit keywords per cluster (reduce/topics.py) against the map's own
fit (reduce/projection.py, UMAP as a release fits it), on the same points in the same run.

20newsgroups (its first N posts): LSA vectors (TF-IDF, English stop words, TruncatedSVD to 50
dimensions; not timed) stand in for a model's; the map is fitted with the default [map] settings,
then its topics (the default levels 8/32/128, keywords from at most ``topic_sample`` documents).
Both are timed in wall and in CPU seconds (the machine is shared: CPU time is the steadier
measure); the ratio topics / map is the number to read. Warm-up UMAP fits (600 and 5,000
points) pay numba's compilation first. The texts are read from memory here; in a release they come
from the catalog (``get_many`` of the sampled ids), which this does not time.
Writes bench/results/map_topics.json.

    .venv/bin/python bench/map_topics.py [--sizes 5000,18846] [--capped 5000]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer

from embedlake.config import MapSettings
from embedlake.reduce import projection, topics

from _common import write_result
from _common.corpora import corpus
from _common.results import table


def timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def run(n: int, texts: dict[str, str], capped: int) -> list[dict[str, Any]]:
    ids = list(texts)[:n]
    tfidf = TfidfVectorizer(stop_words="english", sublinear_tf=True, min_df=2)
    x = TruncatedSVD(50, random_state=0).fit_transform(tfidf.fit_transform(texts[i] for i in ids))
    settings = MapSettings()
    fitted, wall, cpu = timed(lambda: projection.fit(ids, x, settings))

    def read(wanted: Sequence[str]) -> dict[str, str]:
        return {i: texts[i] for i in wanted}

    rows = []
    for sample in sorted({settings.topic_sample, capped}, reverse=True):
        labelled = MapSettings(topic_sample=sample)
        found, t_wall, t_cpu = timed(lambda s=labelled: topics.fit(ids, fitted.coords, read, s))
        coarse = found["levels"][0]["topics"]
        rows.append(
            {
                "documents": n,
                "map_wall_s": round(wall, 2),
                "map_cpu_s": round(cpu, 2),
                "topic_sample": sample,
                "sampled": found["sampled"],
                "levels": [level["clusters"] for level in found["levels"]],
                "topics_wall_s": round(t_wall, 2),
                "topics_cpu_s": round(t_cpu, 2),
                "ratio_cpu": round(t_cpu / cpu, 3),
                # the coarse labels, each with the newsgroup of the post it sits on
                "coarse": [[" · ".join(t["keywords"]), t["id"].rsplit("_", 1)[0]] for t in coarse],
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="5000,18846")
    parser.add_argument("--capped", type=int, default=5000, help="a smaller topic_sample, too")
    args = parser.parse_args(argv)
    texts = {r["_id"]: f"{r.get('title', '')} {r['text']}" for r in corpus("20newsgroups")}
    # numba compiles here, on both of UMAP's neighbour paths (exact below 4,096 points, NN-descent
    # above)
    for n in (600, 5000):
        warm = np.random.default_rng(0).normal(size=(n, 50)).astype(np.float32)
        projection.fit([str(i) for i in range(n)], warm, MapSettings())
    rows = [row for n in map(int, args.sizes.split(",")) for row in run(n, texts, args.capped)]
    print(
        table(
            ["documents", "map s (cpu)", "topic_sample", "levels", "topics s (cpu)", "topics/map"],
            [
                [
                    f"{r['documents']:,}",
                    f"{r['map_wall_s']} ({r['map_cpu_s']})",
                    f"{r['topic_sample']:,}",
                    "/".join(map(str, r["levels"])),
                    f"{r['topics_wall_s']} ({r['topics_cpu_s']})",
                    r["ratio_cpu"],
                ]
                for r in rows
            ],
        )
    )
    write_result("map_topics", {"runs": rows})


if __name__ == "__main__":
    main()
