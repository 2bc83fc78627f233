"""Long documents at scale: N documents of 5,000 words each, embedded (split into passages,
streamed shard by shard), indexed and served, with the process's peak memory after each stage.

The documents are 20newsgroups posts run together into 5,000-word documents (real text, so real
sentence boundaries). The encoder is all-MiniLM-L6-v2 at its 256-token window, bfloat16 where
the CPU has it natively; ``--encoder static`` uses its model2vec serving form instead (same
tokenizer, same 256-token window, so the same passages), which encodes fast enough to run the full
10,000 documents and show that memory does not grow with the collection. Memory is the peak
resident set (``ru_maxrss``) of this one process.

    .venv/bin/python bench/passages_scale.py [--documents 1000] [--shard-size 250]
    .venv/bin/python bench/passages_scale.py --encoder static --documents 10000 --shard-size 500
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import resource
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from embedlake import Workspace
from embedlake.embeddings.batch import embed
from embedlake.encoders import forms, hardware
from embedlake.encoders.sentence_transformers import SentenceTransformerEncoder, builtin_path
from embedlake.encoders.static import KIND as STATIC_KIND
from embedlake.encoders.static import StaticEncoder
from embedlake.ingest import ingest_path
from embedlake.models import artifacts
from embedlake.models.resolve import resolve_model
from embedlake.search.build import build_index
from embedlake.search.searcher import Searcher

from _common import DATA, write_result

WORDS = 5000


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def documents(n: int, folder: Path) -> Path:
    """n documents of WORDS words, from 20newsgroups posts in order (cycled if need be)."""
    posts = [json.loads(line)["text"] for line in (DATA / "20newsgroups" / "corpus.jsonl").open()]
    words: list[str] = []
    path = folder / "long.jsonl"
    with path.open("w") as out:
        i = 0
        for d in range(n):
            while len(words) < WORDS:
                words += posts[i % len(posts)].split()
                i += 1
            text, words = " ".join(words[:WORDS]), words[WORDS:]
            out.write(json.dumps({"_id": f"long-{d}", "title": f"Collection {d}", "text": text}))
            out.write("\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--documents", type=int, default=1000)
    parser.add_argument("--shard-size", type=int, default=250)
    parser.add_argument("--encoder", choices=("minilm", "static"), default="minilm")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    out: dict[str, Any] = {"documents": args.documents, "words": WORDS, "encoder": args.encoder}
    with tempfile.TemporaryDirectory(prefix="embedlake-scale-") as tmp:
        env = {"EMBEDLAKE_EMBED__SHARD_SIZE": str(args.shard_size)}
        with Workspace.init(Path(tmp) / "ws", environ=env) as ws:
            started = time.perf_counter()
            ingest_path(ws, documents(args.documents, Path(tmp)), source="long")
            out["ingest"] = {"seconds": time.perf_counter() - started, "peak_mb": peak_mb()}
            if args.encoder == "static":
                folder = Path(tmp) / "static"
                # distilled in a child process, so torch's memory is not in this one's peak
                with ProcessPoolExecutor(
                    1, mp_context=multiprocessing.get_context("spawn")
                ) as pool:
                    pool.submit(
                        forms.make, "static", builtin_path(), folder, max_seq_length=256
                    ).result()
                precision = "fp32"
                encoder: Any = StaticEncoder(folder, max_seq_length=256)
                record = artifacts.publish_folder(
                    ws, folder, name="minilm-static", kind=STATIC_KIND
                )
            else:
                precision = "bf16" if hardware.native_bf16() else "fp32"
                encoder = SentenceTransformerEncoder(
                    builtin_path(), device="cpu", precision=precision
                )
                record = resolve_model(ws, "minilm")
            out["setup_peak_mb"] = peak_mb()
            report = embed(ws, record, encoder)
            passages = ws.catalog.registry.cut(
                record.id, ws.catalog.registry.latest_chunker(record.id)
            )
            out["embed"] = {
                "seconds": report.seconds,
                "peak_mb": peak_mb(),
                "precision": precision,
                **passages.describe(),
            }
            print(f"embedded: {out['embed']}", flush=True)
            built = build_index(ws, record)
            out["index"] = {
                "seconds": built.seconds,
                "vectors": built.n_vectors,
                "peak_mb": peak_mb(),
            }
            print(f"indexed: {out['index']}", flush=True)
            searcher = Searcher(ws, record.ref, encoder=encoder)
            started = time.perf_counter()
            queries = ["hockey playoff results", "space shuttle launch", "gun control debate"] * 10
            hits = [searcher.search(q, 10) for q in queries]
            assert all(len(h) == 10 and len({x.id for x in h}) == 10 for h in hits)
            out["search"] = {
                "seconds_per_query": (time.perf_counter() - started) / len(queries),
                "peak_mb": peak_mb(),
            }
            print(f"served: {out['search']}", flush=True)
    write_result("passages_scale" + ("-static" if args.encoder == "static" else ""), out)


if __name__ == "__main__":
    main()
