"""Build a BEIR-layout collection from the docstrings of the installed standard library and packages.

Every installation has this text. Each public function or class with a docstring is a document
(title: its dotted name; text: the docstring without its summary line; label: its top-level
package). The summary line is a known-item query whose one relevant document is the one it came
from. Sources are parsed with ``ast``: nothing is imported or executed.
"""

from __future__ import annotations

import ast
import json
import logging
import random
import sysconfig
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

_SKIP_PARTS = {
    "test",
    "tests",
    "idle_test",
    "testing",
    "_vendor",
    "vendored",
    "site-packages",
    "__pycache__",
    "lib2to3",
    "turtledemo",
    "benchmarks",
}


@dataclass(frozen=True)
class Entry:
    id: str
    package: str
    summary: str
    body: str


# Packages that every embedlake installation has (its own dependencies), small enough to parse in
# seconds; the giants (transformers, torch, sympy) would dominate the labels and the parse time.
PACKAGES = (
    "numpy",
    "sklearn",
    "sqlalchemy",
    "alembic",
    "pydantic",
    "rich",
    "click",
    "fsspec",
    "sentence_transformers",
    "pyarrow",
    "duckdb",
    "typer",
    "faiss",
)


CANDIDATES = 2  # candidates parsed per document wanted (see build)
Progress = Callable[[int, int], None]  # (modules parsed, modules in all)


def _roots() -> list[tuple[str, Path]]:
    """(label, folder) for the standard library and the installed packages above."""
    roots = [("stdlib", Path(sysconfig.get_paths()["stdlib"]))]
    for folder in {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}:
        for name in PACKAGES:
            pkg = Path(folder) / name
            if (pkg / "__init__.py").is_file() and all(n != name for n, _ in roots):
                roots.append((name, pkg))
    return roots


def _modules(label: str, root: Path) -> Iterator[tuple[str, Path]]:
    base = root if label == "stdlib" else root.parent
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(base).with_suffix("").parts
        if any(p in _SKIP_PARTS or (p.startswith("_") and p != "__init__") for p in parts):
            continue
        yield ".".join(parts).removesuffix(".__init__"), path


def _split(doc: str) -> tuple[str, str]:
    lines = doc.strip().splitlines()
    summary = lines[0].strip() if lines else ""
    body = "\n".join(lines[1:]).strip()
    return summary, body


def _entries_of(module: str, label: str, path: Path, min_body_words: int) -> Iterator[Entry]:
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (SyntaxError, ValueError, UnicodeDecodeError, OSError):
        return
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            continue
        if node.name.startswith("_"):
            continue
        doc = ast.get_docstring(node)
        if not doc:
            continue
        summary, body = _split(doc)
        if len(summary.split()) < 4 or len(body.split()) < min_body_words:
            continue
        yield Entry(f"{module}.{node.name}", label, summary, body)


def entries(
    min_body_words: int = 25,
    *,
    limit: int | None = None,
    seed: int = 0,
    progress: Progress | None = None,
) -> Iterator[Entry]:
    """Documents of the modules in a seeded random order (every package is represented in its
    share), stopping after ``limit`` of them: parsing every module costs tens of seconds on a
    busy machine, and a corpus of a few thousand needs only a part of them."""
    modules = [(m, label, p) for label, root in _roots() for m, p in _modules(label, root)]
    random.Random(seed).shuffle(modules)
    found = 0
    for done, (module, label, path) in enumerate(modules, 1):
        for entry in _entries_of(module, label, path, min_body_words):
            yield entry
            found += 1
        if progress is not None:
            progress(done, len(modules))
        if limit is not None and found >= limit:
            return


def build(
    out: Path,
    *,
    max_documents: int = 3000,
    max_queries: int = 300,
    seed: int = 0,
    progress: Progress | None = None,
) -> Path:
    """Write corpus.jsonl, queries.jsonl and qrels/test.tsv under ``out``; returns ``out``.

    Modules are parsed until there are ``CANDIDATES`` times ``max_documents`` candidates, room
    for the duplicates dropped below and for a sample that is not the whole pool."""
    seen: dict[str, Entry] = {}
    for entry in entries(limit=CANDIDATES * max_documents, seed=seed, progress=progress):
        seen.setdefault(entry.id, entry)
    # A summary shared by several documents (inherited boilerplate) cannot name one of them.
    counts = Counter(e.summary.lower() for e in seen.values())
    bodies = Counter(e.body for e in seen.values())
    pool = sorted(
        (e for e in seen.values() if counts[e.summary.lower()] == 1 and bodies[e.body] == 1),
        key=lambda e: e.id,
    )
    rng = random.Random(seed)
    docs = sorted(rng.sample(pool, min(max_documents, len(pool))), key=lambda e: e.id)
    queries = sorted(rng.sample(docs, min(max_queries, len(docs))), key=lambda e: e.id)
    (out / "qrels").mkdir(parents=True, exist_ok=True)
    with (out / "corpus.jsonl").open("w", encoding="utf-8") as f:
        for e in docs:
            f.write(
                json.dumps({"_id": e.id, "title": e.id, "text": e.body, "labels": [e.package]})
                + "\n"
            )
    with (out / "queries.jsonl").open("w", encoding="utf-8") as f:
        for n, e in enumerate(queries, 1):
            f.write(json.dumps({"_id": f"q{n}", "text": e.summary}) + "\n")
    with (out / "qrels" / "test.tsv").open("w", encoding="utf-8") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for n, e in enumerate(queries, 1):
            f.write(f"q{n}\t{e.id}\t1\n")
    log.info(
        "docstrings corpus: %d documents, %d queries from %d candidates",
        len(docs),
        len(queries),
        len(pool),
    )
    return out
