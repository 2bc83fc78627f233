"""A user's functions module (``runtime.modules = ["embedlake_test_jobs"]``), packaged with the
Lambda artifacts like any other: the scheduled-function test runs it from the unpacked light image."""

from __future__ import annotations

from typing import Any

from embedlake.events import Event
from embedlake.functions import Functions, schedule
from embedlake.functions.context import Context

functions = Functions()


@functions.function(on=schedule("0 3 * * *"), name="nightly", retries=0)
def nightly(event: Event, ctx: Context) -> dict[str, Any]:
    return {"due": event.data["due"], "cron": event.subject}
