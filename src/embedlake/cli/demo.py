"""``embedlake demo``: the main job, end to end, on a corpus every installation has."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from embedlake.cli.output import console, embed_with_progress, table
from embedlake.cli.releases import _build
from embedlake.config import CONFIG_FILE
from embedlake.evaluate import bench as benchmark
from embedlake.ingest import ingest_path
from embedlake.ingest.datasets import load_folder
from embedlake.models.resolve import resolve_model
from embedlake.search.build import build_index
from embedlake.search.searcher import Searcher
from embedlake.workspace import Workspace


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
    models = model or ["lsa", "minilm"]
    with Workspace.init(workspace) as ws:
        if dataset is None:
            from embedlake.demo import docstrings

            dataset = ws.settings.workspace / "demo-data" / "docstrings"
            if not (dataset / "corpus.jsonl").is_file():
                console.print("building the docstrings corpus from the installed Python …")
                docstrings.build(dataset, max_documents=max_documents)
        console.rule(f"1. ingest {dataset}")
        for report in ingest_path(ws, dataset):
            console.print(
                f"{report.file}: {report.inserted:,} new, {report.updated:,} updated, "
                f"{report.unchanged:,} unchanged, {report.rejected:,} rejected",
                highlight=False,
            )
        name = dataset.resolve().name
        evaluation = load_folder(dataset)
        results = [
            benchmark.bench_bm25(ws, evaluation),
            benchmark.bench_bm25(ws, evaluation, stem=True),
        ]
        for spec in models:
            record = resolve_model(ws, spec)
            console.rule(f"2. embed and index with {record.ref}")
            embedded = embed_with_progress(ws, record)
            console.print(
                f"embedded {embedded.embedded:,} documents ({embedded.rate:,.1f}/s)",
                highlight=False,
            )
            built = build_index(ws, record)
            console.print(
                f"{built.engine} index over {built.n_vectors:,} vectors ({built.seconds:.1f} s)",
                highlight=False,
            )
            results.append(benchmark.bench_model(ws, evaluation, record.ref))
        console.rule(f"3. benchmark on {name} ({len(evaluation.queries)} queries)")
        columns = ["ndcg@10", "recall@100", "mrr@10", "ann_recall@10", "qps"]
        table(
            None,
            ["system", *columns],
            [(r.system, *[r.metrics.get(c) for c in columns]) for r in results],
        )
        best = max(results[2:], key=lambda r: r.metrics["ndcg@10"])
        console.rule(f"4. example searches with {best.system}")
        searcher = Searcher(ws, best.system)
        for qid in list(evaluation.queries)[:3]:
            query = evaluation.queries[qid]
            relevant = [d for d, g in evaluation.qrels[qid].items() if g > 0]
            hits = searcher.search(query, 3)
            table(
                f"{query!r} (relevant: {', '.join(relevant[:3])})",
                ["#", "score", "id"],
                [(n, h.score, h.id) for n, h in enumerate(hits, 1)],
            )
        summary = {r.system: round(r.metrics["ndcg@10"], 4) for r in results}
        console.print(f"nDCG@10: {json.dumps(summary)}", highlight=False)
        console.rule(f"5. a release of {best.system}, with its map")
        made = _build(ws, best.system, "demo", publish=True)
        release_report = ws.catalog.releases.get(made["release"]).report
        fitted, form = release_report["map"], release_report.get("serving_form", {})
        console.print(
            f"release {made['release']} {made['status']}: {fitted['method']} map of "
            f"{fitted['n']:,} documents; served as {form.get('model', best.system)} "
            f"(serving form: {form.get('form', 'model')})",
            highlight=False,
        )
        for name, row in form.get("forms", {}).items():
            console.print(
                f"  {name:<11} {row['docs_per_s']:8.1f} docs/s  nDCG@10 {row['ndcg@10']}"
                + (f"  passed: {row['passed']}" if "passed" in row else ""),
                highlight=False,
            )
    if not serve:
        console.print(f'\nnext: embedlake serve {workspace}, or embedlake search {workspace} "…"')
        return
    _serve_open(workspace, port)


def _serve_open(workspace: Path, port: int) -> None:
    """Serve on loopback without keys (the demo workspace is set to open mode)."""
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
