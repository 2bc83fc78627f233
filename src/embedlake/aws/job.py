"""Heavy functions (``embed-new``, ``build-release``: every shard of a corpus, no GPU and 15
minutes at most on Lambda) as AWS Batch jobs, from the same image as the Lambda functions.

``dispatch`` submits a job with the function and the outbox event's id as parameters; the job runs
``python -m embedlake.aws.job FUNCTION EVENT_ID`` (the image's entrypoint passes ``job …`` here),
which records the invocation as Lambda does, without Lambda's limits, and then pokes dispatch: what
the function emitted (``release.built``, …) re-enters the event flow at once.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence

from embedlake.aws.container import ENV_BATCH_DEFINITION, ENV_BATCH_QUEUE, Container, container
from embedlake.errors import ConfigError, EmbedlakeError
from embedlake.events import Event
from embedlake.functions import FunctionSpec

log = logging.getLogger(__name__)


def configured() -> bool:
    return bool(os.environ.get(ENV_BATCH_QUEUE))


def submit(box: Container, spec: FunctionSpec, event: Event) -> str:
    """Submit the job that runs ``spec`` for ``event``; its id."""
    definition = os.environ.get(ENV_BATCH_DEFINITION)
    if not definition:
        raise ConfigError(f"{ENV_BATCH_QUEUE} is set but {ENV_BATCH_DEFINITION} is not")
    name = f"embedlake-{spec.name}-{event.id}"[:128]
    submitted = box.client("batch").submit_job(
        jobName="".join(c if c.isalnum() or c in "-_" else "-" for c in name),
        jobQueue=os.environ[ENV_BATCH_QUEUE],
        jobDefinition=definition,
        parameters={"function": spec.name, "event": event.id},
        timeout={"attemptDurationSeconds": max(60, round(spec.timeout))},
    )
    job_id = str(submitted["jobId"])
    log.info("%s for event %s: Batch job %s", spec.name, event.id, job_id)
    return job_id


def main(argv: Sequence[str] | None = None) -> int:
    """Run one function for one recorded event, as a Batch job; 0 when it succeeded."""
    from embedlake.aws.dispatch import poke
    from embedlake.aws.invocations import function_spec, run

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2:
        log.error("usage: python -m embedlake.aws.job FUNCTION EVENT_ID")
        return 2
    function, event_id = args
    try:
        box = container(limited=False)
        outcome = run(box, function_spec(box, function), box.ws.catalog.events.get(event_id))
    except EmbedlakeError as exc:
        log.error("%s for %s failed: %s", function, event_id, exc)
        return 1
    log.info("%s for %s: %s", function, event_id, outcome["status"])
    poke(box)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
