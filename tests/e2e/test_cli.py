"""The CLI end to end, as a user runs it: separate processes, real collections."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import collection


def run(
    *args: str, ok: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "embedlake.cli.app", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=900,
    )
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc


def run_json(*args: str) -> Any:
    return json.loads(run(*args, "--json").stdout)


def _by_system(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["system"].split("@")[0]: r for r in rows}


def test_cranfield_with_lsa_matches_the_reference_values(tmp_path: Path) -> None:
    ws = str(tmp_path / "ws")
    run("init", ws)
    [report] = run_json("ingest", ws, str(collection("cranfield")))
    assert (report["inserted"], report["rejected"]) == (1398, 2)  # two records are empty
    assert "title and text are both empty" in report["reasons"][0]
    embedded = run_json("embed", ws, "--model", "lsa")
    assert embedded["embedded"] == 1398
    built = run_json("index", ws)
    assert (built["engine"], built["n_vectors"]) == ("rabitq-hnsw", 1398)  # auto, under 2M
    tuning = built["tuning"]  # ef_search tuned to the default target on a fifth held back
    assert (tuning["knob"], tuning["sample"], tuning["reached"]) == ("ef_search", 279, True)
    assert tuning["recall"] >= 0.95 and tuning["value"] in map(int, tuning["curve"])
    # and on query-like spans of the held-back passages, all but ones of words LSA never saw
    assert tuning["sets"]["documents"] == 279 and 270 <= tuning["sets"]["spans"] <= 279
    assert min(c[str(tuning["value"])] for c in tuning["curves"].values()) >= 0.95
    hits = run_json("search", ws, "heat transfer in slabs", "-k", "5")
    assert len(hits["hits"]) == 5 and hits["model"].startswith("lsa@")
    rows = _by_system(run_json("bench", ws))  # the dataset registered at ingest
    # ../shared/data/README.md: BM25 35.2, BM25+stem 37.3, LSA 39.0 nDCG@10 (x100)
    assert rows["bm25"]["ndcg@10"] == pytest.approx(0.352, abs=0.002)
    assert rows["bm25+stem"]["ndcg@10"] == pytest.approx(0.373, abs=0.002)
    assert rows["lsa"]["ndcg@10"] == pytest.approx(0.390, abs=0.01)
    assert rows["lsa"]["recall@100"] == pytest.approx(0.768, abs=0.01)
    assert rows["lsa"]["ann_recall@10"] >= 0.95
    [count] = run_json("sql", ws, "select count(*) as n from documents")
    assert count == {"n": 1398}
    status = run_json("status", ws)
    assert status["documents"] == 1398 and status["datasets"] == ["cranfield"]


@pytest.mark.slow
def test_med_with_minilm_matches_the_reference_values(tmp_path: Path) -> None:
    ws = str(tmp_path / "ws")
    run("init", ws)
    run("ingest", ws, str(collection("med")))
    assert run_json("embed", ws, "--model", "minilm")["embedded"] == 1033
    run("index", ws)
    rows = _by_system(run_json("bench", ws, "--dataset", str(collection("med"))))
    # reference: BM25 66.7, MiniLM 78.7 nDCG@10; MiniLM recall@100 95.8 (x100)
    assert rows["bm25"]["ndcg@10"] == pytest.approx(0.667, abs=0.002)
    assert rows["minilm"]["ndcg@10"] == pytest.approx(0.787, abs=0.01)
    assert rows["minilm"]["recall@100"] == pytest.approx(0.958, abs=0.01)
    models = run_json("models", ws)
    assert [(m["kind"], m["dim"], m["embedded"]) for m in models] == [
        ("sentence-transformers", 384, 1033)
    ]


def test_every_command_has_help() -> None:
    for command in (
        "init",
        "migrate",
        "ingest",
        "delete",
        "embed",
        "index",
        "search",
        "bench",
        "sql",
        "models",
        "status",
        "demo",
        "serve",
        "map",
        "keys create",
        "keys list",
        "keys revoke",
    ):
        out = run(*command.split(), "--help").stdout
        assert "Usage" in out and "--help" in out


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (("search", "{ws}/missing", "q"), 3, "no workspace at"),
        (("ingest", "{ws}", "{ws}/nope.jsonl"), 2, "no such file or folder"),
        (("search", "{ws}", "anything"), 3, "embedlake index"),
        (("embed", "{ws}", "--model", "nosuch"), 3, "not registered"),
        (("sql", "{ws}", "select broken from"), 2, "SQL error"),
    ],
)
def test_user_errors_are_one_line_with_an_exit_code(
    tmp_path: Path, args: tuple[str, ...], code: int, needle: str
) -> None:
    ws = tmp_path / "ws"
    run("init", str(ws))
    proc = run(*[a.format(ws=ws) for a in args], ok=False)
    assert proc.returncode == code, proc.stderr
    assert needle in proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith("error:")


def test_strict_ingest_fails_on_rejects(tmp_path: Path) -> None:
    ws = str(tmp_path / "ws")
    run("init", ws)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"_id": "1", "text": "ok"}\n{"_id": "2"}\n')
    assert run("ingest", ws, str(bad), ok=False).returncode == 0
    proc = run("ingest", ws, str(bad), "--source", "again", "--strict", ok=False)
    assert proc.returncode == 1
    assert "missing text" in proc.stdout


def test_demo_runs_on_the_installed_docstrings_and_serves_the_map(tmp_path: Path) -> None:
    """The README's main job: it ends serving the API and the map, and prints the URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path / "demo.log"
    args = ["--workspace", str(tmp_path / "demo"), "--model", "lsa", "--max-documents", "600"]
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "embedlake.cli.app", "demo", *args, "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "COLUMNS": "200"},
        )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 600
        while f"serving {url}/" not in log.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            time.sleep(1)
        ready = _wait_ready(url)
        assert ready["status"] == "ready"
        page = httpx.get(f"{url}/")
        assert page.status_code == 200 and "app.js" in page.text
        maps = httpx.get(f"{url}/v1/map").json()  # open mode on loopback: no key
        assert maps["releases"][0]["aliases"] == ["production"]
        assert maps["releases"][0]["documents"] == 600
    finally:
        proc.terminate()
        proc.wait(30)
    out_text = log.read_text()
    assert "benchmark on docstrings" in out_text
    summary = json.loads(out_text.split("nDCG@10:", 1)[1].splitlines()[0])
    assert set(summary) >= {"bm25", "bm25+stem"} and any(k.startswith("lsa@") for k in summary)
    assert all(0.0 < v <= 1.0 for v in summary.values())


def _wait_ready(url: str) -> Any:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            response = httpx.get(f"{url}/readyz", timeout=2)
            if response.status_code == 200:
                return response.json()
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise AssertionError("the demo's server never became ready")


def test_up_handles_a_dropped_file_and_reports_runs(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    env = {"EMBEDLAKE_EMBED__MODEL": "lsa", "EMBEDLAKE_RUNTIME__POLL_INTERVAL": "0.02"}
    run("init", str(ws))
    target = ws / "lake" / "raw" / "med" / "corpus.jsonl"
    target.parent.mkdir(parents=True)
    target.write_bytes((collection("med") / "corpus.jsonl").read_bytes())
    proc = run(
        "up", str(ws), "--until-idle", "--timeout", "300", "--log-format", "json", "-v", env=env
    )
    logged = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    assert any(e.get("function") == "ingest" and e.get("invocation") for e in logged)
    runs = json.loads(run("runs", str(ws), "--json", env=env).stdout)
    assert {r["function"] for r in runs} >= {"ingest", "embed-new"}
    assert {r["status"] for r in runs} == {"succeeded"}
    assert json.loads(run("runs", str(ws), "--failed", "--json", env=env).stdout) == []
    functions = {
        f["function"]: f for f in json.loads(run("functions", str(ws), "--json", env=env).stdout)
    }
    assert functions["ingest"]["last"] == "succeeded" and functions["ingest"]["runs"] == 1
    assert (functions["ingest"]["durable"], functions["embed-new"]["durable"]) == (False, True)
    hits = json.loads(run("search", str(ws), "cancer cells", "--json", env=env).stdout)
    assert len(hits["hits"]) == 10
    proc = run("retry", str(ws), runs[0]["id"], ok=False, env=env)
    assert proc.returncode == 2 and "not dead-lettered" in proc.stderr
