"""Triggers, specs and events: the parts of the functions runtime that need no runtime."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from embedlake import Workspace
from embedlake.errors import ConfigError
from embedlake.events import DOCUMENTS_CHANGED, OBJECT_CREATED, Event, from_s3_notification
from embedlake.functions import (
    Functions,
    object_created,
    object_removed,
    on_event,
    parse_duration,
    schedule,
)
from embedlake.functions.builtin import functions as builtin
from embedlake.functions.builtin import ingest
from embedlake.functions.context import direct_context
from tests.conftest import write_jsonl


@pytest.mark.parametrize(
    ("pattern", "key", "hit"),
    [
        ("raw/**/*.jsonl", "raw/src/a.jsonl", True),
        ("raw/**/*.jsonl", "raw/a.jsonl", True),
        ("raw/**/*.jsonl", "raw/src/deep/a.jsonl", True),
        ("raw/**/*.jsonl", "raw/src/a.csv", False),
        ("raw/*.jsonl", "raw/src/a.jsonl", False),
        ("raw/**", "raw/x", True),
        ("raw/**", "rawx/y", False),
        ("models/*/*/manifest.json", "models/m/1/manifest.json", True),
        ("models/*/*/manifest.json", "models/m/1/sub/manifest.json", False),
        ("a?c", "abc", True),
        ("a.c", "abc", False),
    ],
)
def test_key_patterns(pattern: str, key: str, hit: bool) -> None:
    event = Event(OBJECT_CREATED, key)
    assert object_created(pattern).matches(event) is hit
    assert object_removed(pattern).matches(event) is False


def test_event_and_schedule_triggers() -> None:
    assert on_event(DOCUMENTS_CHANGED).matches(Event(DOCUMENTS_CHANGED, "src"))
    assert not on_event(DOCUMENTS_CHANGED).matches(Event(OBJECT_CREATED, "src"))
    assert schedule("*/5 * * * *").matches(Event("schedule", "*/5 * * * *"))
    with pytest.raises(ConfigError, match="cron"):
        schedule("every tuesday")


@pytest.mark.parametrize(
    ("value", "seconds"), [(90, 90.0), ("30s", 30.0), ("10m", 600.0), ("2h", 7200.0), ("1.5", 1.5)]
)
def test_durations(value: str | int, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["soon", "-5", "0", "5d"])
def test_bad_durations(value: str) -> None:
    with pytest.raises(ConfigError):
        parse_duration(value)


def test_decorators_only_record_a_spec() -> None:
    registry = Functions()
    calls: list[str] = []

    @registry.function(on=object_created("raw/**"), concurrency=3, timeout="2m", retries=5)
    def my_handler(event: Event, ctx: object) -> None:
        calls.append(event.id)

    spec = registry["my-handler"]
    assert (spec.concurrency, spec.timeout, spec.retries) == (3, 120.0, 5)
    assert spec.handler is my_handler and calls == []  # nothing ran at import or decoration
    assert [s.name for s in registry.matching(Event(OBJECT_CREATED, "raw/a/b"))] == ["my-handler"]
    with pytest.raises(ConfigError, match="twice"):
        registry.function(on=on_event("x"), name="my-handler")(my_handler)
    with pytest.raises(ConfigError, match="twice"):
        registry.merge(registry)


def test_object_events_round_trip_through_the_s3_notification_shape() -> None:
    event = Event(OBJECT_CREATED, "raw/my source/a b+c.jsonl", {"size": 12, "etag": "abc"})
    payload = event.s3_notification(bucket="lake")
    record = payload["Records"][0]
    assert record["eventName"] == "ObjectCreated:Put"
    assert record["s3"]["bucket"]["name"] == "lake"
    assert record["s3"]["object"]["key"] == "raw/my%20source/a%20b%2Bc.jsonl"
    [back] = from_s3_notification(payload)
    assert (back.type, back.subject, back.data["size"], back.data["etag"]) == (
        OBJECT_CREATED,
        "raw/my source/a b+c.jsonl",
        12,
        "abc",
    )
    assert abs((back.time - event.time).total_seconds()) < 0.001
    assert Event.from_json(event.to_json()) == event


def test_a_handler_is_a_plain_function_a_test_can_call(ws: Workspace, tmp_path: Path) -> None:
    f = write_jsonl(tmp_path / "d.jsonl", [{"_id": "1", "text": "one"}, {"_id": "2", "text": "b"}])
    with f.open("rb") as handle:
        info = ws.lake.put_file("raw/src/d.jsonl", handle)
    event = Event(OBJECT_CREATED, info.key, {"size": info.size, "etag": info.etag})
    ctx = direct_context(ws, "ingest", request_id="req-1")
    assert ctx.get_remaining_time_in_millis() > 0
    assert ingest(event, ctx) == {
        "read": 2,
        "inserted": 2,
        "updated": 0,
        "unchanged": 0,
        "rejected": 0,
    }
    emitted = [e for e in ws.catalog.events.all() if e.type == DOCUMENTS_CHANGED]
    assert [(e.id, e.subject, e.data["changed"]) for e in emitted] == [("req-1/1", "src", 2)]
    ingest(event, direct_context(ws, "ingest", request_id="req-1"))  # a repeated delivery
    assert len([e for e in ws.catalog.events.all() if e.type == DOCUMENTS_CHANGED]) == 1


def test_builtin_functions_and_their_triggers() -> None:
    names = {s.name: [t.describe() for t in s.triggers] for s in builtin}
    assert names == {
        "ingest": ["object.created(raw/**)"],
        "embed-new": ["documents.changed"],
        "register-model": ["object.created(models/*/*/manifest.json)"],
        "build-release": ["model.registered"],
        "retrain-on-growth": ["documents.changed"],
    }


def test_scheduled_retraining_is_a_function_only_when_configured(tmp_path: Path) -> None:
    from embedlake.functions.builtin import scheduled_retraining
    from embedlake.functions.loading import load_functions

    with Workspace.init(tmp_path / "a", environ={}) as ws:
        assert list(scheduled_retraining(ws)) == []
    env = {"EMBEDLAKE_TRAINING__KIND": "lsa", "EMBEDLAKE_TRAINING__SCHEDULE": "0 3 * * 0"}
    with Workspace.init(tmp_path / "b", environ=env) as ws:
        spec = load_functions(ws)["retrain-scheduled"]
        assert [t.describe() for t in spec.triggers] == ["schedule(0 3 * * 0)"]


def test_structured_logs_carry_the_invocation_ids() -> None:
    import json
    import logging

    from embedlake.runtime.logs import InvocationFilter, JsonFormatter, invocation_ids

    record = logging.LogRecord("embedlake.x", logging.INFO, __file__, 1, "hello %s", ("you",), None)
    with invocation_ids(function="ingest", invocation="ev1:ingest", event="ev1"):
        assert InvocationFilter().filter(record)
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "hello you"
    assert (line["function"], line["invocation"], line["event"]) == ("ingest", "ev1:ingest", "ev1")


def test_the_dispatcher_raises_one_event_per_due_cron_tick(tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    from embedlake.runtime.service import Runtime

    ticking = Functions()

    @ticking.function(on=schedule("* * * * *"))
    def every_minute(event: Event, ctx: object) -> None: ...

    with Workspace.init(tmp_path / "ws", environ={}) as ws:
        runtime = Runtime(ws, ticking)  # not started: only its scheduler is exercised
        last = datetime.now(UTC) - timedelta(minutes=2)
        runtime._schedules(last)
        runtime._schedules(last)  # the same tick again: the outbox keeps one
        ticks = [e for e in ws.catalog.events.all() if e.type == "schedule"]
        assert len(ticks) == 1 and ticks[0].subject == "* * * * *"
        assert ticks[0].data["function"] == "every-minute"
        assert [s.name for s in runtime.functions.matching(ticks[0])] == ["every-minute"]
        runtime._schedules(datetime.now(UTC))  # nothing due yet
        assert len([e for e in ws.catalog.events.all() if e.type == "schedule"]) == 1


def test_the_event_core_routes_each_event_once_and_claims_each_invocation_once(
    ws: Workspace,
) -> None:
    """What the local runtime and the AWS handlers share (runtime/router.py, runtime/core.py): a
    queued invocation per (event, matching function), started once, the cursor after it, one
    claim at a time."""
    from embedlake.runtime.core import CURSOR, claim, finish, invocation_id
    from embedlake.runtime.router import Router

    chained = Functions()

    @chained.function(on=on_event(DOCUMENTS_CHANGED))
    def follow(event: Event, ctx: object) -> None: ...

    event = Event(DOCUMENTS_CHANGED, "src", {"changed": 1}, id="e1")
    ws.catalog.events.add(event)
    started: list[str] = []

    def router() -> Router:  # one per AWS dispatch call
        return Router(ws, chained, persist=True, start=lambda s, e, run_id: started.append(run_id))

    assert router().route() == 1
    run_id = invocation_id(event, chained["follow"])
    assert started == [run_id] == ["e1:follow"]
    assert ws.catalog.events.get_state(CURSOR) == str(ws.catalog.events.latest_seq())
    assert router().route() == 0

    ws.catalog.events.set_state(CURSOR, "0")  # a dispatcher that crashed before the cursor moved
    assert router().route() == 1 and started == [run_id]  # routed again, recorded: not started

    assert claim(ws, run_id, stale_after=60) == 1
    assert claim(ws, run_id, stale_after=60) is None  # running elsewhere
    finish(ws, run_id, "retrying", "E" * 5000)
    assert claim(ws, run_id, stale_after=60) == 2
    finish(ws, run_id, "succeeded", None)
    assert claim(ws, run_id, stale_after=60) is None
    done = ws.catalog.events.invocation(run_id)
    assert (done.status, done.attempts, done.error) == ("succeeded", 2, None)
    assert done.seconds is not None and done.seconds >= 0


def test_a_dispatcher_of_one_pass_remembers_the_numbers_it_waits_for(ws: Workspace) -> None:
    """The AWS dispatcher routes in one Lambda call and is gone: the outbox numbers it read past
    (an event committing late on PostgreSQL, simulated here by a row taken out and put back) are
    kept in the catalog with when they were first missed, so the next call routes the late event,
    and gives a number up after the grace instead of waiting below it for ever."""
    from sqlalchemy import delete, insert, select

    from embedlake.catalog.schema import events as table
    from embedlake.runtime.core import CURSOR
    from embedlake.runtime.router import WAITED, Router

    chained = Functions()

    @chained.function(on=on_event(DOCUMENTS_CHANGED))
    def follow(event: Event, ctx: object) -> None: ...

    started: list[str] = []
    for n in (1, 2, 3):
        ws.catalog.events.add(Event(DOCUMENTS_CHANGED, "src", id=f"e{n}"))
    with ws.catalog.begin() as conn:  # e2 "in flight": its number taken, its row not visible
        row = dict(conn.execute(select(table).where(table.c.id == "e2")).one()._mapping)
        conn.execute(delete(table).where(table.c.id == "e2"))

    def call(grace: float = 300.0) -> int:
        router = Router(ws, chained, persist=True, start=lambda s, e, i: started.append(e.id))
        router.gaps.grace = grace
        return router.route()

    assert call() == 2 and started == ["e1", "e3"]
    cursor = ws.catalog.events.get_state(CURSOR)
    waited = ws.catalog.events.get_state(WAITED)
    assert int(cursor) == row["seq"] - 1 and list(json.loads(waited)) == [str(row["seq"])]
    assert call() == 1 and started == ["e1", "e3"]  # e3 read again, not started again
    assert ws.catalog.events.get_state(WAITED) == waited  # first missed: still the first call

    with ws.catalog.begin() as conn:  # e2 commits
        conn.execute(insert(table).values(**row))
    assert call() >= 1 and started == ["e1", "e3", "e2"]
    assert json.loads(ws.catalog.events.get_state(WAITED)) == {}
    assert ws.catalog.events.get_state(CURSOR) == str(ws.catalog.events.latest_seq())

    for n in (4, 5):  # a number that never comes (a rolled-back insert): given up after the grace
        ws.catalog.events.add(Event(DOCUMENTS_CHANGED, "src", id=f"e{n}"))
    with ws.catalog.begin() as conn:
        conn.execute(delete(table).where(table.c.id == "e4"))
    assert call() == 1 and started[-1] == "e5"
    assert ws.catalog.events.get_state(CURSOR) != str(ws.catalog.events.latest_seq())
    call(grace=0.0)
    assert ws.catalog.events.get_state(CURSOR) == str(ws.catalog.events.latest_seq())
    assert json.loads(ws.catalog.events.get_state(WAITED)) == {}


def test_a_context_counts_the_events_it_emitted(ws: Workspace) -> None:
    ctx = direct_context(ws, "follow", request_id="r1")
    assert ctx.emitted == 0
    ctx.emit(DOCUMENTS_CHANGED, "src")
    assert ctx.emitted == 1
