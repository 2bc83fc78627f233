"""The functions runtime: events in the outbox become durable invocations of matching functions.

    lake writes, watcher, scan, emit ──▶ catalog.events (outbox) ──dispatcher (woken by work)──▶
    queued invocations, claimed per function ──▶ DBOS workflow invoke (retries, back-off, dead
    letter) ──▶ attempt (handler; steps; fan-out) ──▶ engine (local threads or Ray) for heavy tasks

The catalog keeps the queue; DBOS keeps the workflow checkpoints (SQLite by default, PostgreSQL in
production), so a crashed runtime resumes every interrupted invocation at the step where it stopped.
"""

from embedlake.runtime.service import Runtime

__all__ = ["Runtime"]
