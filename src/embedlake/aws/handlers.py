"""Lambda entry points: one per registered function (``ingest``, ``embed_new``, …), ``dispatch``
and ``api``. Each is ``NAME(event, context) -> dict`` and calls the same handler as the local runtime.

- The workspace comes from the environment only (``EMBEDLAKE_*``; secrets as ``*_FILE``), over a
  default ``embedlake.toml`` written to ``EMBEDLAKE_WORKSPACE_DIR`` (``/tmp/embedlake``) on a cold
  start. It is opened once per container and never migrated here: ``embedlake migrate`` is a
  deploy step, and a catalog behind the code is a ConfigError.
- An invocation row per (event, function), id ``<event id>:<function>`` as in the local runtime, so
  ``embedlake runs`` lists Lambda's invocations too. It is claimed atomically before the handler
  runs: a repeated delivery of a finished invocation is a no-op, one still running elsewhere fails
  (and AWS delivers it again later), one that failed runs again, up to ``retries`` + 1 attempts.
- Chained events: ``ctx.emit`` writes to the catalog's outbox; ``dispatch`` (on a schedule, and poked
  after a function emitted) routes them (see :func:`route`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, TypeVar

from sqlalchemy import and_, or_, update

from embedlake.aws.events import LakeLocation, ObjectNotice, Tick, invoke_payload, messages, units
from embedlake.catalog import open_catalog
from embedlake.catalog.schema import invocations
from embedlake.config import CONFIG_FILE, Settings, default_toml
from embedlake.errors import ConfigError, Conflict, InputError, NotFound
from embedlake.events import OBJECT_CREATED, OBJECT_REMOVED, SCHEDULE, Event
from embedlake.functions import Functions, FunctionSpec
from embedlake.functions.context import Context, DirectSteps, Steps, Task
from embedlake.lake import created_event_id, open_lake
from embedlake.runtime.engines import Engine, open_engine, task_ref
from embedlake.runtime.logs import invocation_ids
from embedlake.runtime.runtime import CURSOR, load_functions
from embedlake.runtime.watch import _forget
from embedlake.workspace import Workspace

log = logging.getLogger(__name__)
R = TypeVar("R")
LambdaHandler = Callable[[dict[str, Any], object], dict[str, Any]]

ENV_WORKSPACE = "EMBEDLAKE_WORKSPACE_DIR"
ENV_FUNCTION = "EMBEDLAKE_AWS_FUNCTION_"  # + NAME: the deployed Lambda of function "name"
ENV_API_ROLE = "EMBEDLAKE_AWS_API_ROLE"  # all (default) | search | embed
# The Lambda wiring's variables are not settings (Settings refuses unknown EMBEDLAKE_* names).
_NOT_SETTINGS = ("EMBEDLAKE_AWS_", ENV_WORKSPACE)
# Embed every shard of a corpus: allowed on Lambda only when the shards go to a Ray cluster.
HEAVY = frozenset({"embed-new", "build-release"})
LAMBDA_MAX_SECONDS = 900.0
LOST_AFTER = timedelta(minutes=15)  # a queued invocation nobody started: invoked again
_DISPATCH_MARGIN_MS = 30_000  # dispatch stops routing this long before Lambda stops it


class InFlight(Conflict):
    """The invocation runs elsewhere now; the delivery should come again later."""


@dataclass
class Container:
    """What one Lambda container keeps between invocations."""

    ws: Workspace
    functions: Functions
    lake: LakeLocation
    engine: Engine | None = None
    api: Api | None = None
    lambda_client: Any = None
    lock: threading.Lock = field(default_factory=threading.Lock)


_container: Container | None = None
_opening = threading.Lock()


def container() -> Container:
    global _container
    with _opening:
        if _container is None:
            _container = _open()
        return _container


def _open() -> Container:
    folder = Path(os.environ.get(ENV_WORKSPACE) or "/tmp/embedlake")
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / CONFIG_FILE).exists():
        (folder / CONFIG_FILE).write_text(default_toml(), encoding="utf-8")
    environ = {k: v for k, v in os.environ.items() if not k.startswith(_NOT_SETTINGS)}
    settings = Settings.load(folder, environ)
    if settings.catalog_url().startswith("sqlite"):
        raise ConfigError(
            "on AWS Lambda the catalog must be a database every function shares "
            "(EMBEDLAKE_CATALOG__URL=postgresql+psycopg://...), not a SQLite file in /tmp"
        )
    lake = LakeLocation.parse(settings.resolve(settings.lake.url))
    # Workspace.from_settings, but closing the catalog when its schema check fails
    password = settings.catalog.password
    secret = password.get_secret_value() if password is not None else None
    catalog = open_catalog(settings.catalog_url(), secret)
    try:
        catalog.check_schema()  # never migrates: a catalog behind the code is a ConfigError
        ws = Workspace(
            settings, open_lake(settings.resolve(settings.lake.url), settings.lake), catalog
        )
        return Container(ws, load_functions(ws), lake)
    except BaseException:
        catalog.close()
        raise


def shutdown() -> None:
    """Close what the container holds (tests; a Lambda extension's SHUTDOWN)."""
    global _container
    with _opening:
        box, _container = _container, None
    if box is None:
        return
    if box.api is not None:
        box.api.close()
    if box.engine is not None:
        box.engine.close()
    box.ws.close()


# -- the functions ---------------------------------------------------------------------------


def entry_point(function: str) -> LambdaHandler:
    def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
        return handle(function, event, context)

    handler.__name__ = handler.__qualname__ = function.replace("-", "_")
    handler.__doc__ = f"The Lambda entry point of function {function!r}."
    return handler


ingest = entry_point("ingest")
embed_new = entry_point("embed-new")
register_model = entry_point("register-model")
build_release = entry_point("build-release")
retrain_on_growth = entry_point("retrain-on-growth")


def __getattr__(name: str) -> LambdaHandler:
    """Entry points of functions that settings add (``retrain_scheduled``, ``runtime.modules``):
    known only once the workspace is open, so the name is checked when the entry point runs."""
    if re.fullmatch(r"[a-z][a-z0-9_]*", name):
        return entry_point(name.replace("_", "-"))
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def handle(function: str, payload: Any, context: object = None) -> dict[str, Any]:
    box = container()
    spec = _spec(box, function)
    batch, parts = units(payload)
    failed: list[str] = []
    done: list[dict[str, Any]] = []
    for item_id, raw in parts:
        try:
            for message in messages(raw, box.lake):
                event = _event(box.ws, spec, message)
                if event is not None and spec.matches(event):
                    done.append(run(box, spec, event, context))
        except Exception:
            if item_id is None:
                raise  # Lambda retries the whole invocation, then its on-failure destination
            log.exception("SQS message %s failed; only it is delivered again", item_id)
            failed.append(item_id)
    if any(d.get("emitted") for d in done):
        _poke_dispatch(box)
    if batch:
        return {"batchItemFailures": [{"itemIdentifier": i} for i in failed]}
    return {"invocations": done}


def _spec(box: Container, function: str) -> FunctionSpec:
    try:
        return box.functions[function]
    except KeyError:
        known = ", ".join(sorted(s.name for s in box.functions))
        raise ConfigError(f"no function {function!r} is registered (known: {known})") from None


def _event(ws: Workspace, spec: FunctionSpec, message: ObjectNotice | Tick | Event) -> Event | None:
    """The outbox event a message stands for, recorded with this function's invocation in one
    transaction (so a dispatcher never sees the event without it); None: nothing to run."""
    if isinstance(message, ObjectNotice):
        if message.type == OBJECT_REMOVED:
            if not ws.lake.exists(message.key):  # notifications come late: the store decides
                _forget(ws, message.key)  # dispatch routes the removal from the outbox
            return None
        try:
            info = ws.lake.info(message.key)
        except NotFound:
            log.info("%s is gone already", message.key)
            return None
        event = Event(
            OBJECT_CREATED,
            message.key,
            {"size": info.size, "etag": info.etag},
            id=created_event_id(message.key, info.etag),  # the id the writer and scans give it
        )
    elif isinstance(message, Tick):
        cron = next((t.cron for t in spec.triggers if t.cron is not None), None)
        if cron is None:
            raise InputError(f"function {spec.name!r} has no schedule trigger")
        due = message.time.isoformat()
        event = Event(
            SCHEDULE, cron, {"function": spec.name, "due": due}, id=f"schedule:{spec.name}:{due}"
        )
    else:
        event = message
    with ws.catalog.begin():
        ws.catalog.events.add(event)
        if event.type == OBJECT_CREATED:
            ws.catalog.events.mark_seen(event.key, event.data["etag"], event.data["size"])
        if spec.matches(event):
            _queue(ws, _run_id(event, spec), spec.name, event.id)
    return event


def _run_id(event: Event, spec: FunctionSpec) -> str:
    return f"{event.id}:{spec.name}"


def run(box: Container, spec: FunctionSpec, event: Event, context: object = None) -> dict[str, Any]:
    """Run ``spec``'s handler for ``event`` once, recorded as an invocation."""
    events, run_id = box.ws.catalog.events, _run_id(event, spec)
    _queue(box.ws, run_id, spec.name, event.id)  # no-op when recorded already
    attempt = _claim(box.ws, run_id, min(spec.timeout, LAMBDA_MAX_SECONDS) + 60)
    if attempt is None:
        current = events.invocation(run_id)
        if current.status == "succeeded":
            return {"invocation": run_id, "status": "duplicate"}
        raise InFlight(f"invocation {run_id} is {current.status} elsewhere; deliver it later")
    with invocation_ids(function=spec.name, invocation=run_id, event=event.id):
        try:
            _check_can_run(box.ws, spec)
            ctx = Context(
                ws=box.ws,
                function_name=spec.name,
                request_id=run_id,
                timeout=min(spec.timeout, _seconds_left(context)),
                attempt=attempt,
                steps=_steps(box),
            )
            result = spec.handler(event, ctx)
        except Exception as exc:
            final = attempt > spec.retries or isinstance(exc, ConfigError)  # config: no retry
            _finish(box.ws, run_id, "dead" if final else "retrying", f"{type(exc).__name__}: {exc}")
            raise
    _finish(box.ws, run_id, "succeeded", None)
    out = {"invocation": run_id, "status": "succeeded", "emitted": ctx._emitted, "result": result}
    return dict(json.loads(json.dumps(out, default=str)))  # Lambda sends it back as JSON


def _queue(ws: Workspace, run_id: str, function: str, event_id: str) -> bool:
    """Record a queued invocation; False when it exists. Events.invocation_queued says True
    either way on PostgreSQL (its rowcount), so this asks RETURNING instead."""
    stmt = ws.catalog.insert(invocations).values(
        id=run_id,
        function=function,
        event_id=event_id,
        status="queued",
        attempts=0,
        enqueued_at=datetime.now(UTC),
    )
    with ws.catalog.begin() as conn:
        added = conn.execute(
            stmt.on_conflict_do_nothing(index_elements=["id"]).returning(invocations.c.id)
        ).first()
    return added is not None


def _claim(ws: Workspace, run_id: str, stale_after: float) -> int | None:
    """Mark the invocation running, if nobody runs it (or whoever did is long dead); the attempt."""
    c, now = invocations.c, datetime.now(UTC)
    stale = and_(c.status == "running", c.started_at < now - timedelta(seconds=stale_after))
    stmt = (
        update(invocations)
        .where(c.id == run_id, or_(c.status.in_(["queued", "retrying", "dead"]), stale))
        .values(status="running", attempts=c.attempts + 1, started_at=now, finished_at=None)
        .returning(c.attempts)
    )
    with ws.catalog.begin() as conn:
        row = conn.execute(stmt).first()
    return None if row is None else int(row[0])


def _finish(ws: Workspace, run_id: str, status: str, error: str | None) -> None:
    now = datetime.now(UTC)
    started = ws.catalog.events.invocation(run_id).started_at or now
    ws.catalog.events.invocation_update(
        run_id,
        status=status,
        error=None if error is None else error[:4000],
        finished_at=now,
        seconds=(now - started).total_seconds(),
    )


def _check_can_run(ws: Workspace, spec: FunctionSpec) -> None:
    if spec.name in HEAVY and ws.settings.runtime.engine != "ray":
        raise ConfigError(
            f"function {spec.name!r} embeds a corpus shard by shard, which Lambda cannot do (no "
            'GPU, 15 minutes at most): on Lambda it needs runtime.engine = "ray" '
            "(EMBEDLAKE_RUNTIME__ENGINE=ray, EMBEDLAKE_RUNTIME__RAY_ADDRESS=ray://head:10001) so "
            "that the shards run on a Ray cluster; or leave it to the template's Batch job"
        )


def _seconds_left(context: object) -> float:
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    return remaining() / 1000 if callable(remaining) else LAMBDA_MAX_SECONDS


def _steps(box: Container) -> Steps:
    if box.ws.settings.runtime.engine != "ray":
        return DirectSteps(box.ws)
    with box.lock:
        if box.engine is None:
            box.engine = open_engine(box.ws.settings, box.ws)
    return EngineSteps(box.engine, box.ws.settings.runtime.max_workers)


class EngineSteps:
    """Steps here; fan-out items on the compute engine (from Lambda: a Ray cluster), in parallel.
    Not durable: a retried invocation runs again, and shards already stored are not redone."""

    def __init__(self, engine: Engine, workers: int) -> None:
        self._engine, self._workers = engine, workers

    def step(self, name: str, fn: Callable[..., R], *args: Any) -> R:
        return fn(*args)

    def map(self, name: str, fn: Task, items: Sequence[Any]) -> list[Any]:
        ref = task_ref(fn)
        with ThreadPoolExecutor(self._workers, thread_name_prefix="fan-out") as pool:
            return list(pool.map(lambda item: self._engine.run(ref, item), items))


# -- dispatch ----------------------------------------------------------------------------------


class Invoker(Protocol):
    """How dispatch starts an invocation (recorded already as queued)."""

    def __call__(self, box: Container, spec: FunctionSpec, event: Event) -> None: ...


def inline(box: Container, spec: FunctionSpec, event: Event) -> None:
    """Run it in this process, now."""
    run(box, spec, event)


def function_env(function: str) -> str:
    return ENV_FUNCTION + function.upper().replace("-", "_")


def invoke_or_inline(box: Container, spec: FunctionSpec, event: Event) -> None:
    """Invoke the function's own Lambda asynchronously (``EMBEDLAKE_AWS_FUNCTION_<NAME>``), or
    run it inline where none is deployed for it."""
    target = os.environ.get(function_env(spec.name))
    if not target:
        inline(box, spec, event)
        return
    _lambda(box).invoke(
        FunctionName=target,
        InvocationType="Event",
        Payload=json.dumps(invoke_payload(event)).encode(),
    )


def _lambda(box: Container) -> Any:
    with box.lock:
        if box.lambda_client is None:
            import boto3

            box.lambda_client = boto3.client("lambda")
        return box.lambda_client


def _poke_dispatch(box: Container) -> None:
    """After a function emitted: start a dispatch now rather than at its next schedule."""
    target = os.environ.get(function_env("dispatch"))
    if target:
        _lambda(box).invoke(FunctionName=target, InvocationType="Event", Payload=b"{}")


def dispatch(event: dict[str, Any], context: object) -> dict[str, Any]:
    """The Lambda entry point of the dispatcher (payload: a scheduled event, or anything)."""
    return route(container(), invoke_or_inline, context)


def route(box: Container, invoker: Invoker, context: object = None) -> dict[str, Any]:
    """Give each new (outbox event, matching function) an invocation row, then start it; invoke
    again the failed invocations due for a retry and the queued ones nobody started.

    The row is inserted before the invoke and the cursor moves after it: two dispatchers at once,
    or one that crashed half-way, never start one invocation twice (the row exists), and one lost
    between row and invoke is found by the sweep."""
    events = box.ws.catalog.events
    seen = started = 0
    while _seconds_left(context) * 1000 > _DISPATCH_MARGIN_MS:
        batch = events.after(int(events.get_state(CURSOR, "0")), limit=100)
        if not batch:
            break
        for seq, event in batch:
            for spec in box.functions.matching(event):
                if _queue(box.ws, _run_id(event, spec), spec.name, event.id):
                    started += _start(box, invoker, spec, event)
            events.set_state(CURSOR, str(seq))
        seen += len(batch)
    return {"events": seen, "invoked": started, "retried": _sweep(box, invoker)}


def _sweep(box: Container, invoker: Invoker) -> int:
    events, now = box.ws.catalog.events, datetime.now(UTC)
    base = box.ws.settings.runtime.retry_base_seconds
    again, names = 0, {s.name for s in box.functions}
    for inv in [*events.invocations(status="retrying"), *events.invocations(status="queued")]:
        since = inv.finished_at or inv.enqueued_at
        wait = LOST_AFTER if inv.status == "queued" else timedelta(seconds=base * 2**inv.attempts)
        if now - since < wait or inv.function not in names:
            continue
        # queued again, from now: the next sweep waits for this invoke instead of repeating it
        events.invocation_update(inv.id, status="queued", enqueued_at=now, finished_at=None)
        again += _start(box, invoker, box.functions[inv.function], events.get(inv.event_id))
    return again


def _start(box: Container, invoker: Invoker, spec: FunctionSpec, event: Event) -> int:
    try:
        invoker(box, spec, event)
    except Exception:  # recorded on the invocation; dispatch goes on with the others
        log.exception("invocation %s failed", _run_id(event, spec))
    return 1


# -- the HTTP API ------------------------------------------------------------------------------


class Api:
    """The FastAPI app behind Mangum, started once per container: its lifespan (the serving state:
    encoder, index, alias following) runs at the first request and stays up, not per request as
    Mangum's own lifespan handling would do."""

    def __init__(self, ws: Workspace) -> None:
        from mangum import Mangum

        from embedlake.api.app import ROLES, create_app

        role = os.environ.get(ENV_API_ROLE, "all")
        if role not in ROLES:
            raise ConfigError(f"{ENV_API_ROLE}={role!r}: use one of {', '.join(ROLES)}")
        app = create_app(ws, role)  # narrowed to a Role by the check above
        self.app = app
        self.loop = asyncio.new_event_loop()  # Mangum runs requests on the thread's loop
        asyncio.set_event_loop(self.loop)
        self._lifespan: AbstractAsyncContextManager[Any] = app.router.lifespan_context(app)
        self.loop.run_until_complete(self._lifespan.__aenter__())
        self.handler = Mangum(app, lifespan="off")

    def close(self) -> None:
        self.loop.run_until_complete(self._lifespan.__aexit__(None, None, None))
        self.loop.close()
        asyncio.set_event_loop(None)


def api(event: dict[str, Any], context: object) -> dict[str, Any]:
    """The Lambda entry point of the HTTP API (API Gateway v2 HTTP, Function URL)."""
    box = container()
    with box.lock:
        if box.api is None:
            box.api = Api(box.ws)
    return box.api.handler(event, context)  # type: ignore[arg-type]
