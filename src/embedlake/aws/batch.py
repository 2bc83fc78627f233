"""Submitting heavy functions (``embed-new``, ``build-release``: every shard of a corpus, no GPU and
15 minutes at most on Lambda) as AWS Batch jobs, from the same image as the Lambda functions.

``dispatch`` submits a job with the function and the outbox event's id as parameters; the job runs
:mod:`embedlake.aws.job`. Apart from it, so that dispatch submits jobs without importing the job's
own entry point (which pokes dispatch when it is done).
"""

from __future__ import annotations

import logging
import os

from embedlake.aws.container import Container
from embedlake.aws.environment import ENV_BATCH_DEFINITION, ENV_BATCH_QUEUE
from embedlake.errors import ConfigError
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
