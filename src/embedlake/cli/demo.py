"""``embedlake demo``: the main job, end to end, on a corpus every installation has.

Each numbered step the demo prints is one function here, in the order it runs: prepare the corpus,
ingest it, embed and index with each model (searching with the first one as soon as it is
indexed), benchmark, search with the best model, build a release of it with its map, and serve the
API and the map. What the libraries print goes to ``demo.log`` in the workspace (cli.quiet); every
step that takes a while shows its progress (cli.progress) and its time. A first look shortens the
release's serving-form stage, says so, and ``--full`` runs it in full.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from embedlake.cli.output import embed_with_progress, table
from embedlake.cli.progress import working
from embedlake.cli.quiet import libraries_to_log

if TYPE_CHECKING:
    from embedlake.evaluate.bench import Result
    from embedlake.ingest.datasets import Dataset
    from embedlake.workspace import Workspace

COLUMNS = ["ndcg@10", "recall@100", "mrr@10", "ann_recall@10", "qps"]
LOG = "demo.log"
# A first look reads fewer docstrings: with passages, the long ones cost two to three times as
# much to embed, and the demo must serve its map within 4 minutes of a quiet 2-core machine
# (docs/benchmarks.md, section 15: 323 s with 3,000 docstrings; 262 s with 2,000 from a fresh
# virtualenv on a 2-core AMD EPYC without AMX, where MiniLM runs slower than on the Intel Xeon).
FIRST_LOOK_DOCUMENTS = 1500
FULL_DOCUMENTS = 3000
# A first look measures one serving form on a smaller evaluation corpus (the full stage measures
# every form of serving.forms on serving.eval_documents): torch-bf16 where the CPU runs bf16
# natively (no export to make, and the fastest form there), else onnx-int8. Measured on a quiet
# 2-core machine, the full stage took 48 s on med and onnx-int8 on 500 documents 47 s of the demo.
SHORT_FORMS = ("torch-bf16", "onnx-int8")
SHORT_EVAL_DOCUMENTS = 150

# documents per embedding shard: the bar moves once per shard (2,048, the default, is most of the
# demo corpus), and a release loads its serving form once per shard (so not much smaller)
PROGRESS_SHARD = 1000

screen = Console(
    markup=False
)  # the demo's own: it keeps the terminal while libraries write to the log


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
    max_documents: Annotated[
        int | None,
        typer.Option(
            help=f"Size of the docstrings corpus (default {FIRST_LOOK_DOCUMENTS:,}; "
            f"{FULL_DOCUMENTS:,} with --full)."
        ),
    ] = None,
    full: Annotated[
        bool,
        typer.Option(
            help="Run every step in full: every serving form of `serving.forms` on "
            "`serving.eval_documents` documents (a first look measures one form on fewer), "
            f"on {FULL_DOCUMENTS:,} docstrings."
        ),
    ] = False,
    serve: Annotated[
        bool, typer.Option(help="End by serving the API and the map on 127.0.0.1 (open mode).")
    ] = True,
    port: Annotated[int, typer.Option(help="Port for --serve.")] = 8000,
) -> None:
    """Create a workspace, ingest a corpus, embed, index, benchmark, show example searches, build
    a release (with its map) of the best model, and serve the API and the map."""
    from embedlake.workspace import Workspace

    started = time.perf_counter()
    times: dict[str, float] = {}
    environ = _environment(full)
    with Workspace.init(workspace, environ) as ws, libraries_to_log(workspace / LOG, screen):
        screen.print(
            f"embedlake demo in {ws.settings.workspace}; what the libraries print goes to "
            f"{workspace / LOG}",
            highlight=False,
        )
        with _timed(times, "corpus"):
            folder = dataset or _docstrings_corpus(ws, _corpus_size(max_documents, full))
        with _timed(times, "ingest"):
            evaluation = _ingest(ws, folder)
        with _timed(times, "bm25"):
            results = _bm25_baselines(ws, evaluation)
        for n, spec in enumerate(model or ["lsa", "minilm"]):
            with _timed(times, spec):
                results.append(_embed_and_index(ws, evaluation, spec))
            if n == 0:
                _example_searches(ws, evaluation, results[-1].system, "2. first searches")
                screen.print(
                    f"first search results after {time.perf_counter() - started:.0f} s",
                    highlight=False,
                )
        best = _benchmark(folder, evaluation, results)
        if best != results[2].system:
            _example_searches(ws, evaluation, best, "4. example searches")
        else:
            screen.print(f"the best model is {best}: its searches are shown above", highlight=False)
        _summary(results)
        _shortened(ws, best, full)
        with _timed(times, "release"):
            _release(ws, best)
    times["in all"] = time.perf_counter() - started
    screen.print(
        "wall time: " + ", ".join(f"{k} {v:.1f} s" for k, v in times.items()), highlight=False
    )
    if not serve:
        screen.print(f'\nnext: embedlake serve {workspace}, or embedlake search {workspace} "…"')
        return
    _serve_open(workspace, port)


@contextmanager
def _timed(times: dict[str, float], name: str) -> Iterator[None]:
    started = time.perf_counter()
    yield
    times[name] = time.perf_counter() - started


def _environment(full: bool) -> Mapping[str, str]:
    """The settings a first look shortens, as environment over the workspace's embedlake.toml
    (which stays as written); a setting the user set in the environment is kept. Shards of
    ``PROGRESS_SHARD`` documents in any case: the embedding bar moves once per shard."""
    environ = dict(os.environ)
    environ.setdefault("EMBEDLAKE_EMBED__SHARD_SIZE", str(PROGRESS_SHARD))
    if full:
        return environ
    from embedlake.encoders import forms

    first = next(f for f in SHORT_FORMS if forms.unavailable_reason(f) is None)
    environ.setdefault("EMBEDLAKE_SERVING__FORMS", json.dumps([first]))
    environ.setdefault("EMBEDLAKE_SERVING__EVAL_DOCUMENTS", str(SHORT_EVAL_DOCUMENTS))
    return environ


def _shortened(ws: Workspace, best: str, full: bool) -> None:
    """Say what this run shortens, before the step it shortens (serving forms are measured for
    sentence-transformers models only)."""
    if full or ws.catalog.registry.model(best).kind != "sentence-transformers":
        return
    from embedlake.config import ServingSettings

    default, serving = ServingSettings(), ws.settings.serving
    if serving.forms == default.forms and serving.eval_documents == default.eval_documents:
        return
    screen.print(
        f"[yellow]shortened:[/] serving forms measured: {', '.join(serving.forms) or 'none'} "
        f"on {serving.eval_documents:,} evaluation documents (in full: "
        f"{', '.join(default.forms)} on {default.eval_documents:,}); `--full` runs them all",
        highlight=False,
        markup=True,
    )


def _corpus_size(asked: int | None, full: bool) -> int:
    """The docstrings to read: a first look takes fewer (their long ones are split into
    passages, each embedded twice: by the model, then by the release's serving form), and says
    so."""
    if asked is not None:
        return asked
    if full:
        return FULL_DOCUMENTS
    screen.print(
        f"[yellow]shortened:[/] a corpus of {FIRST_LOOK_DOCUMENTS:,} docstrings (in full: "
        f"{FULL_DOCUMENTS:,}); `--full` or `--max-documents` reads more",
        highlight=False,
        markup=True,
    )
    return FIRST_LOOK_DOCUMENTS


def _docstrings_corpus(ws: Workspace, max_documents: int) -> Path:
    """The default corpus, built once per workspace from the installed Python (no download)."""
    from embedlake.demo import docstrings

    folder = ws.settings.workspace / "demo-data" / "docstrings"
    if not (folder / "corpus.jsonl").is_file():
        with working(screen, "reading docstrings of the installed Python", counted=True) as w:
            docstrings.build(folder, max_documents=max_documents, progress=w.count)
        screen.print(f"docstrings corpus built in {w.seconds:.1f} s", highlight=False)
    return folder


def _ingest(ws: Workspace, folder: Path) -> Dataset:
    """Step 1: ingest the corpus; its queries and judgements are the evaluation set."""
    from embedlake.ingest import ingest_path
    from embedlake.ingest.datasets import load_folder

    screen.rule(f"1. ingest {folder}")
    with working(screen, "ingesting") as w:
        reports = ingest_path(ws, folder)
    for report in reports:
        screen.print(
            f"{report.file}: {report.inserted:,} new, {report.updated:,} updated, "
            f"{report.unchanged:,} unchanged, {report.rejected:,} rejected ({w.seconds:.1f} s)",
            highlight=False,
        )
    return load_folder(folder)


def _bm25_baselines(ws: Workspace, evaluation: Dataset) -> list[Result]:
    """The two baselines every model is compared with: BM25, plain and stemmed."""
    from embedlake.evaluate import bench as benchmark

    with working(screen, "BM25 baselines, plain and stemmed") as w:
        found = [
            benchmark.bench_bm25(ws, evaluation),
            benchmark.bench_bm25(ws, evaluation, stem=True),
        ]
    screen.print(f"BM25 baselines measured ({w.seconds:.1f} s)", highlight=False)
    return found


def _embed_and_index(ws: Workspace, evaluation: Dataset, spec: str) -> Result:
    """Step 2, once per model: embed the corpus, index the vectors, benchmark the index."""
    from embedlake.evaluate import bench as benchmark
    from embedlake.models import artifacts
    from embedlake.models.resolve import resolve_model
    from embedlake.search.build import build_index

    screen.rule(f"2. embed and index with {spec}")
    with working(screen, f"loading {spec}") as w:
        record = resolve_model(ws, spec)
        encoder = artifacts.load_encoder(ws, record)
    screen.print(f"model {record.ref} ready ({w.seconds:.1f} s)", highlight=False)
    embedded = embed_with_progress(ws, record, encoder=encoder, to=screen)
    screen.print(
        f"embedded {embedded.embedded:,} documents ({embedded.rate:,.1f}/s)", highlight=False
    )
    with working(screen, "indexing"):
        built = build_index(ws, record)
    documents = ws.catalog.documents.count() - built.missing
    split = (
        f"{built.n_vectors:,} passages of {documents:,} documents (those longer than the "
        "model's window are split)"
        if built.n_vectors > documents
        else f"{documents:,} documents"
    )
    screen.print(f"{built.engine} index over {split} ({built.seconds:.1f} s)", highlight=False)
    with working(screen, f"benchmarking {record.ref}") as w:
        result = benchmark.bench_model(ws, evaluation, record.ref)
    screen.print(f"benchmarked ({w.seconds:.1f} s)", highlight=False)
    return result


def _benchmark(folder: Path, evaluation: Dataset, results: list[Result]) -> str:
    """Step 3: every system side by side; returns the model with the best nDCG@10 (the two BM25
    baselines come first in ``results`` and are not candidates)."""
    screen.rule(f"3. benchmark on {folder.resolve().name} ({len(evaluation.queries)} queries)")
    table(
        None,
        ["system", *COLUMNS],
        [(r.system, *[r.metrics.get(c) for c in COLUMNS]) for r in results],
        to=screen,
    )
    return max(results[2:], key=lambda r: r.metrics["ndcg@10"]).system


def _example_searches(ws: Workspace, evaluation: Dataset, model: str, what: str) -> None:
    """Step 4 (and 2, with the first model as soon as it is indexed, the best one being known
    only after every model): the first three evaluation queries, beside their relevant
    documents, so a reader can judge the hits."""
    from embedlake.search.searcher import Searcher

    screen.rule(f"{what} with {model}")
    searcher = Searcher(ws, model)
    for qid in list(evaluation.queries)[:3]:
        query = evaluation.queries[qid]
        relevant = [d for d, g in evaluation.qrels[qid].items() if g > 0]
        hits = searcher.search(query, 3)
        table(
            f"{query!r} (relevant: {', '.join(relevant[:3])})",
            ["#", "score", "id"],
            [(n, h.score, h.id) for n, h in enumerate(hits, 1)],
            to=screen,
        )


def _summary(results: list[Result]) -> None:
    """One JSON line of nDCG@10 per system (scripts and the end-to-end test read it)."""
    summary = {r.system: round(r.metrics["ndcg@10"], 4) for r in results}
    screen.print(f"nDCG@10: {json.dumps(summary)}", highlight=False)


def _release(ws: Workspace, best: str) -> None:
    """Step 5: a release of the best model, published, with its map and the serving forms that
    were measured for it; each stage on screen as it runs, with its time after."""
    from embedlake.cli.releases import build_now

    screen.rule(f"5. a release of {best}, with its map")
    with working(screen, "release") as w:
        made = build_now(
            ws, best, "demo", publish=True, on_stage=lambda stage: w.say(f"release: {stage}")
        )
    report = ws.catalog.releases.get(made["release"]).report
    fitted, form = report["map"], report.get("serving_form", {})
    screen.print(
        f"release {made['release']} {made['status']} in {w.seconds:.1f} s: {fitted['method']} "
        f"map of {fitted['n']:,} documents; served as {form.get('model', best)} "
        f"(serving form: {form.get('form', 'model')})",
        highlight=False,
    )
    for name, row in form.get("forms", {}).items():
        # forms slower than the first one that passed are not scored (releases/form_choice.py)
        ndcg = row.get("ndcg@10")
        screen.print(
            f"  {name:<11} {row['docs_per_s']:8.1f} docs/s  "
            + ("not judged" if ndcg is None else f"nDCG@10 {ndcg}")
            + (f"  passed: {row['passed']}" if "passed" in row else ""),
            highlight=False,
        )
    stages = report.get("stages", {})
    if stages:
        screen.print(
            "  stages: " + ", ".join(f"{k} {v:.1f} s" for k, v in stages.items()),
            highlight=False,
        )


def _serve_open(workspace: Path, port: int) -> None:
    """Step 6: serve on loopback without keys (the demo workspace is set to open mode)."""
    import uvicorn

    from embedlake.api import create_app
    from embedlake.config import CONFIG_FILE
    from embedlake.workspace import Workspace

    toml = workspace / CONFIG_FILE
    toml.write_text(toml.read_text().replace('auth = "keys"', 'auth = "open"'), encoding="utf-8")
    with Workspace.open(workspace) as ws:
        screen.rule("6. the API and the map")
        screen.print(
            f"serving http://127.0.0.1:{port}/ (the map) and http://127.0.0.1:{port}/docs "
            "(the API); Ctrl-C stops",
            highlight=False,
        )
        uvicorn.run(create_app(ws), host="127.0.0.1", port=port, log_level="warning")
