"""The environment variables of the AWS wiring, which the template sets and the entry points read.

They are not settings (``config.NOT_SETTINGS`` keeps them out of them): they say where this
container's workspace, secret, neighbour functions and Batch queue are, not how embedlake behaves.
A module of their own, so that every entry point can read them without importing another.
"""

from __future__ import annotations

ENV_WORKSPACE = "EMBEDLAKE_WORKSPACE_DIR"
ENV_DB_SECRET = "EMBEDLAKE_AWS_DB_SECRET_ARN"
ENV_FUNCTION = "EMBEDLAKE_AWS_FUNCTION_"  # + NAME: the deployed Lambda of function "name"
ENV_BATCH_QUEUE = "EMBEDLAKE_AWS_BATCH_JOB_QUEUE"  # heavy functions run as Batch jobs there
ENV_BATCH_DEFINITION = "EMBEDLAKE_AWS_BATCH_JOB_DEFINITION"
ENV_API_ROLE = "EMBEDLAKE_AWS_API_ROLE"  # all (default) | search | embed


def function_env(function: str) -> str:
    """The variable holding the deployed Lambda of ``function`` (``embed-new`` → ``…EMBED_NEW``)."""
    return ENV_FUNCTION + function.upper().replace("-", "_")
