"""AWS Lambda: the pipeline's functions behind real AWS triggers, the API behind Mangum.

The registry in :mod:`embedlake.functions` stays the one source of truth: each registered function
has an entry point in :mod:`embedlake.aws.handlers` (``ingest``, ``embed_new``, …), and the template
(:mod:`embedlake.aws.template`) wires each to its trigger. On Lambda::

    S3 put ──(direct, SQS, SNS→SQS, EventBridge)──▶ ingest: records object.created in the outbox,
        runs the handler, records the invocation; ctx.emit writes documents.changed to the outbox
    outbox ──▶ dispatch (on a schedule, and poked after a function emitted): every new (event,
        function) pair gets an invocation row, then an asynchronous ``lambda.invoke`` of that
        function (or, where no function is deployed for it, a run in the dispatcher's process)
    API Gateway v2 / Function URL ──▶ api: the FastAPI app through Mangum

The catalog (PostgreSQL) is the only shared state: the outbox, the objects seen, the invocation log
that ``embedlake runs`` shows, and the dispatch cursor are the same tables the local runtime uses,
written through the same event core (:mod:`embedlake.runtime.core`). Parsing of AWS payloads is in
:mod:`embedlake.aws.payloads`; nothing here imports boto3 or Mangum until an entry point needs them.
"""

# Functions that embed a whole corpus shard by shard: more than Lambda's 15 minutes and no GPU.
# On AWS they run as Batch jobs (submitted by embedlake.aws.batch, run by embedlake.aws.job) or
# send their shards to a Ray cluster.
HEAVY = frozenset({"embed-new", "build-release"})
