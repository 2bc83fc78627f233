"""``embedlake demo``: the main job, end to end, on a corpus every installation has.

Each numbered step the demo prints is one function here, in the order it runs: prepare the corpus,
ingest it, embed and index with each model, benchmark, search with the best model, build a release
of it with its map, and serve the API and the map.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from embedlake.cli.output import console, embed_with_progress, table
from embedlake.cli.releases import build_now
from embedlake.config import CONFIG_FILE
from embedlake.demo import docstrings
from embedlake.evaluate import bench as benchmark
from embedlake.ingest import ingest_path
from embedlake.ingest.datasets import Dataset, load_folder
from embedlake.models.resolve import resolve_model
from embedlake.search.build import build_index
from embedlake.search.searcher import Searcher
from embedlake.workspace import Workspace

COLUMNS = ["ndcg@10", "recall@100", "mrr@10", "ann_recall@10", "qps"]


def demo(
    workspace: Annotated[Path, typer.Option(help="Workspace folder to create or reuse.")] = Path(
        "demo-ws"
    ),
    dataset: Annotated[
        Path | None, typer.Option(help="A BEIR folder to use instead of the docstrings corpus.")
    ] = None,
    model: Annotated[
        list[str] | None,
        typer.Option("--model", "-m", help=("Models to compare (default: lsa and minilm).")),
    ] = None,
    max_documents: Annotated[int, typer.Option(help="Size of the docstrings corpus.")] = 3000,
    serve: Annotated[
        bool, typer.Option(help="End by serving the API and the map on 127.0.0.1 (open mode).")
    ] = True,
    port: Annotated[int, typer.Option(help="Port for --serve.")] = 8000,
) -> None:
    """Create a workspace, ingest a corpus, embed, index, benchmark, show example searches, build
    a release (with its map) of the best model, and serve the API and the map."""
    with Workspace.init(workspace) as ws:
        folder = dataset or _docstrings_corpus(ws, max_documents)
        evaluation = _ingest(ws, folder)
        results = _bm25_baselines(ws, evaluation)
        results += [_embed_and_index(ws, evaluation, spec) for spec in model or ["lsa", "minilm"]]
        best = _benchmark(folder, evaluation, results)
        _example_searches(ws, evaluation, best)
        _summary(results)
        _release(ws, best)
    if not serve:
        console.print(f'\nnext: embedlake serve {workspace}, or embedlake search {workspace} "…"')
        return
    _serve_open(workspace, port)


def _docstrings_corpus(ws: Workspace, max_documents: int) -> Path:
    """The default corpus, built once per workspace from the installed Python (no download)."""
    folder = ws.settings.workspace / "demo-data" / "docstrings"
    if not (folder / "corpus.jsonl").is_file():
        console.print("building the docstrings corpus from the installed Python …")
        docstrings.build(folder, max_documents=max_documents)
    return folder


def _ingest(ws: Workspace, folder: Path) -> Dataset:
    """Step 1: ingest the corpus; its queries and judgements are the evaluation set."""
    console.rule(f"1. ingest {folder}")
    for report in ingest_path(ws, folder):
        console.print(
            f"{report.file}: {report.inserted:,} new, {report.updated:,} updated, "
            f"{report.unchanged:,} unchanged, {report.rejected:,} rejected",
            highlight=False,
        )
    return load_folder(folder)


def _bm25_baselines(ws: Workspace, evaluation: Dataset) -> list[benchmark.Result]:
    """The two baselines every model is compared with: BM25, plain and stemmed."""
    return [benchmark.bench_bm25(ws, evaluation), benchmark.bench_bm25(ws, evaluation, stem=True)]


def _embed_and_index(ws: Workspace, evaluation: Dataset, spec: str) -> benchmark.Result:
    """Step 2, once per model: embed the corpus, index the vectors, benchmark the index."""
    record = resolve_model(ws, spec)
    console.rule(f"2. embed and index with {record.ref}")
    embedded = embed_with_progress(ws, record)
    console.print(
        f"embedded {embedded.embedded:,} documents ({embedded.rate:,.1f}/s)", highlight=False
    )
    built = build_index(ws, record)
    console.print(
        f"{built.engine} index over {built.n_vectors:,} vectors ({built.seconds:.1f} s)",
        highlight=False,
    )
    return benchmark.bench_model(ws, evaluation, record.ref)


def _benchmark(folder: Path, evaluation: Dataset, results: list[benchmark.Result]) -> str:
    """Step 3: every system side by side; returns the model with the best nDCG@10 (the two BM25
    baselines come first in ``results`` and are not candidates)."""
    console.rule(f"3. benchmark on {folder.resolve().name} ({len(evaluation.queries)} queries)")
    table(
        None,
        ["system", *COLUMNS],
        [(r.system, *[r.metrics.get(c) for c in COLUMNS]) for r in results],
    )
    return max(results[2:], key=lambda r: r.metrics["ndcg@10"]).system


def _example_searches(ws: Workspace, evaluation: Dataset, best: str) -> None:
    """Step 4: the first three evaluation queries with the best model, beside their relevant
    documents, so a reader can judge the hits."""
    console.rule(f"4. example searches with {best}")
    searcher = Searcher(ws, best)
    for qid in list(evaluation.queries)[:3]:
        query = evaluation.queries[qid]
        relevant = [d for d, g in evaluation.qrels[qid].items() if g > 0]
        hits = searcher.search(query, 3)
        table(
            f"{query!r} (relevant: {', '.join(relevant[:3])})",
            ["#", "score", "id"],
            [(n, h.score, h.id) for n, h in enumerate(hits, 1)],
        )


def _summary(results: list[benchmark.Result]) -> None:
    """One JSON line of nDCG@10 per system (scripts and the end-to-end test read it)."""
    summary = {r.system: round(r.metrics["ndcg@10"], 4) for r in results}
    console.print(f"nDCG@10: {json.dumps(summary)}", highlight=False)


def _release(ws: Workspace, best: str) -> None:
    """Step 5: a release of the best model, published, with its map and the serving forms that
    were measured for it."""
    console.rule(f"5. a release of {best}, with its map")
    made = build_now(ws, best, "demo", publish=True)
    report = ws.catalog.releases.get(made["release"]).report
    fitted, form = report["map"], report.get("serving_form", {})
    console.print(
        f"release {made['release']} {made['status']}: {fitted['method']} map of "
        f"{fitted['n']:,} documents; served as {form.get('model', best)} "
        f"(serving form: {form.get('form', 'model')})",
        highlight=False,
    )
    for name, row in form.get("forms", {}).items():
        console.print(
            f"  {name:<11} {row['docs_per_s']:8.1f} docs/s  nDCG@10 {row['ndcg@10']}"
            + (f"  passed: {row['passed']}" if "passed" in row else ""),
            highlight=False,
        )


def _serve_open(workspace: Path, port: int) -> None:
    """Step 6: serve on loopback without keys (the demo workspace is set to open mode)."""
    import uvicorn

    from embedlake.api import create_app

    toml = workspace / CONFIG_FILE
    toml.write_text(toml.read_text().replace('auth = "keys"', 'auth = "open"'), encoding="utf-8")
    with Workspace.open(workspace) as ws:
        console.rule("6. the API and the map")
        console.print(
            f"serving http://127.0.0.1:{port}/ (the map) and http://127.0.0.1:{port}/docs "
            "(the API); Ctrl-C stops",
            highlight=False,
        )
        uvicorn.run(create_app(ws), host="127.0.0.1", port=port, log_level="warning")
