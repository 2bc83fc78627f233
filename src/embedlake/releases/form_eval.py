"""What the serving forms are measured on, and the measuring: a bounded sample of the release's own
documents and gate queries, chosen once per build (the same for every form, and every retry).

- speed: ``serving.speed_documents`` live documents, encoded by every form and the model in
  ``serving.speed_rounds`` interleaved rounds (the order rotates each round); wall and CPU
  seconds per round;
- quality: on each gate dataset, at most ``serving.eval_queries`` of its queries over a corpus of
  ``serving.eval_documents``: their judged documents (a sample where there are more than
  ``JUDGED_SHARE`` of it) and other live documents; per-query nDCG@10 of exact search, judged
  within that corpus (the paired test's input: the form and the model rank the same corpus);
- fidelity: cosine of a form's vectors to the model's on that corpus.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from embedlake.encoders import Encoder, Vectors
from embedlake.evaluate import metrics
from embedlake.index import top_k
from embedlake.ingest.datasets import Dataset
from embedlake.releases import gate
from embedlake.workspace import Workspace

JUDGED_SHARE = 0.75  # of an evaluation corpus, the most that is judged documents


@dataclass
class Slice:
    """One gate dataset's bounded evaluation: its sampled queries and the rows of its corpus."""

    dataset: Dataset
    query_ids: list[str]
    qrels: dict[str, dict[str, int]]  # the judgments of the documents in its corpus
    rows: list[int]  # rows of ``Evaluation.doc_ids`` that are its corpus


@dataclass
class Scored:
    """One encoder on the evaluation: its corpus vectors and per-query nDCG@10 per dataset."""

    vectors: Vectors
    per_query: dict[str, list[float]]  # dataset → nDCG@10 per sampled query, in order

    def means(self) -> dict[str, float]:
        return {d: round(float(np.mean(v)), 5) for d, v in self.per_query.items()}


class Evaluation:
    def __init__(
        self, speed_texts: list[str], doc_ids: list[str], doc_texts: list[str], slices: list[Slice]
    ) -> None:
        self.speed_texts, self.doc_ids, self.doc_texts = speed_texts, doc_ids, doc_texts
        self.slices = slices

    @classmethod
    def of(cls, ws: Workspace, held_out: dict[str, list[str]]) -> Evaluation:
        settings = ws.settings.serving
        live = {d.id: d.full_text for d in ws.catalog.documents.iter_live()}
        rng = random.Random(0)  # the same evaluation data for every form, and every retry
        everyone = sorted(live)
        speed = [live[i] for i in rng.sample(everyone, min(settings.speed_documents, len(live)))]
        rows: dict[str, int] = {}
        slices: list[Slice] = []
        for dataset in gate.gate_datasets(ws, held_out):
            judged_of = {
                q: {d for d in dataset.qrels.get(q, {}) if d in live} for q in dataset.queries
            }
            queries = sorted(q for q, docs in judged_of.items() if docs)
            queries = sorted(rng.sample(queries, min(settings.eval_queries, len(queries))))
            judged = sorted(set().union(*(judged_of[q] for q in queries)))
            # at most JUDGED_SHARE of the corpus judged (a sample where more are), the rest other
            # live documents: both sides rank the same corpus, so the comparison stays paired
            keep = max(1, int(settings.eval_documents * JUDGED_SHARE))
            judged = sorted(rng.sample(judged, min(keep, len(judged))))
            kept = set(judged)
            queries = [q for q in queries if judged_of[q] & kept]
            if not queries:
                continue
            others = [d for d in everyone if d not in kept]
            fill = max(0, settings.eval_documents - len(judged))
            corpus = judged + rng.sample(others, min(fill, len(others)))
            qrels = {q: {d: g for d, g in dataset.qrels[q].items() if d in kept} for q in queries}
            slices.append(
                Slice(dataset, queries, qrels, [rows.setdefault(d, len(rows)) for d in corpus])
            )
        if not slices:  # fidelity on a sample of the corpus instead
            for d in rng.sample(everyone, min(settings.eval_documents, len(everyone))):
                rows.setdefault(d, len(rows))
        ids = sorted(rows, key=rows.__getitem__)
        return cls(speed, ids, [live[i] for i in ids], slices)

    def describe(self) -> dict[str, Any]:
        return {
            "speed_documents": len(self.speed_texts),
            "documents": len(self.doc_ids),
            "datasets": {
                s.dataset.name: {
                    "queries": len(s.query_ids),
                    "of_queries": len(s.dataset.queries),
                    "documents": len(s.rows),
                }
                for s in self.slices
            },
        }

    def time_rounds(
        self, encoders: dict[str, Encoder], batch_size: int, rounds: int
    ) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
        """Wall and CPU seconds of each encoder per round, on the same texts, interleaved."""
        names = list(encoders)
        for name in names:  # warm-up: first calls allocate, pick kernels, start thread pools
            encoders[name].encode(self.speed_texts[: 2 * batch_size], batch_size=batch_size)
        wall: dict[str, list[float]] = {n: [] for n in names}
        cpu: dict[str, list[float]] = {n: [] for n in names}
        for r in range(rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                started, cpu_started = time.perf_counter(), time.process_time()
                encoders[name].encode(self.speed_texts, batch_size=batch_size)
                wall[name].append(time.perf_counter() - started)
                cpu[name].append(time.process_time() - cpu_started)
        return wall, cpu

    def score(self, encoder: Encoder, batch_size: int) -> Scored:
        vectors = encoder.encode(self.doc_texts, batch_size=batch_size)
        per_query: dict[str, list[float]] = {}
        for s in self.slices:
            texts = [s.dataset.queries[q] for q in s.query_ids]
            queries = encoder.encode(texts, batch_size=batch_size)
            found = top_k(queries, vectors[s.rows], [self.doc_ids[r] for r in s.rows], 10)
            run = {q: dict(hits) for q, hits in zip(s.query_ids, found, strict=True)}
            ndcg = metrics.per_query(run, s.qrels)["ndcg@10"]
            per_query[s.dataset.name] = [ndcg[q] for q in s.query_ids]
        return Scored(vectors, per_query)
