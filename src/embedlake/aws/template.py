"""The AWS SAM template of a workspace, generated from its function registry (one source of truth).

Each registered function becomes an ``AWS::Serverless::Function`` with handler
``embedlake.aws.handlers.<name>``, the timeout, reserved concurrency and retries of its spec, its
own dead-letter queue and a role granting only what it touches. Two functions outside the registry
are added: ``dispatch`` (routes the catalog's outbox events to the ``on_event`` functions, every
minute) and ``api`` (the HTTP API behind a Function URL). How each trigger arrives:

    object_created/removed ──S3 notification or EventBridge rule──▶ SQS queue ──▶ function
                                         (redriven to the dead-letter queue after retries + 1)
    schedule(cron) ──EventBridge schedule──▶ function  (asynchronous: failures to the DLQ)
    on_event(type) ──dispatch, from the outbox──▶ function (asynchronous: failures to the DLQ)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from embedlake.aws import HEAVY, resources
from embedlake.aws.cfn import (
    allow,
    att,
    aws_cron,
    function_env_var,
    handler_name,
    logical_id,
    ref,
    settings_env,
    sub,
)
from embedlake.aws.triggers import Triggers, object_triggers
from embedlake.config import Settings
from embedlake.errors import ConfigError
from embedlake.events import OBJECT_CREATED, OBJECT_REMOVED, SCHEDULE
from embedlake.functions import Functions, FunctionSpec

LAMBDA_MAX_TIMEOUT = 900  # seconds: Lambda stops every invocation at 15 minutes
HANDLERS = "embedlake.aws.handlers"
# Functions that load a model with torch run from the full image; register-model is one: it loads a
# model to verify it before registering it. The others run from the light image (no torch): even
# the light dependencies (pyarrow, NumPy, SciPy, botocore) exceed a zip's 250 MB (decision 0014).
IMAGE_FUNCTIONS = frozenset(
    {
        "api",
        "embed-new",
        "register-model",
        "build-release",
        "retrain-on-growth",
        "retrain-scheduled",
    }
)
DEFAULT_MEMORY = {"dispatch": 512, "ingest": 2048, "api": 4096, "embed-new": 4096}
LIGHT_MEMORY, IMAGE_MEMORY = 1024, 3008
IMAGE_TMP_MB = 4096  # /tmp for model and index files (Lambda's default is 512 MB)
# Lake prefixes each built-in function reads and writes, from the code it runs; functions from
# runtime.modules get the whole lake prefix, since what they touch is not known here.
ACCESS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "ingest": (("raw/", "curated/"), ("curated/", "quarantine/")),
    "register-model": (("models/",), ("quarantine/",)),
    "embed-new": (
        ("curated/", "models/", "embeddings/", "indexes/", "releases/"),
        ("embeddings/", "indexes/", "releases/"),
    ),
    "build-release": (
        ("curated/", "models/", "embeddings/", "indexes/", "releases/", "benchmarks/"),
        ("embeddings/", "indexes/", "releases/"),
    ),
    "retrain-on-growth": (("curated/", "benchmarks/", "models/"), ("models/",)),
    "retrain-scheduled": (("curated/", "benchmarks/", "models/"), ("models/",)),
    "api": (("models/", "indexes/", "releases/", "curated/"), ("raw/",)),
}
ENV_LIMIT = 4096  # bytes: Lambda's limit on all of a function's environment variables together
_NOT_ROUTED = (OBJECT_CREATED, OBJECT_REMOVED, SCHEDULE)  # delivered by AWS, not by dispatch


@dataclass(frozen=True)
class TemplateOptions:
    """What the workspace's settings do not say about a deployment."""

    existing_bucket: str = ""  # use this bucket (EventBridge rules) instead of creating one
    notifications: Literal["s3", "eventbridge"] = "s3"  # how a created bucket announces objects
    api: bool = True
    api_auth: Literal["iam", "none"] = "iam"
    create_database: bool = True  # Aurora PostgreSQL Serverless v2; else an existing database
    memory: Mapping[str, int] = field(default_factory=dict)  # MB, by function name
    images: frozenset[str] = IMAGE_FUNCTIONS  # functions run from the full image (torch)
    # heavy functions (HEAVY) as AWS Batch jobs on Fargate; ignored when they go to Ray
    heavy_jobs: bool = True


@dataclass
class Template:
    body: dict[str, Any]
    delegated: list[str]  # functions whose spec timeout exceeds Lambda's limit
    warnings: list[str]
    jobs: list[str] = field(default_factory=list)  # functions that run as Batch jobs


def build_template(
    settings: Settings, functions: Functions, options: TemplateOptions | None = None
) -> Template:
    """The SAM template deploying ``functions`` with the workspace's ``settings``."""
    return _Builder(settings, list(functions), options or TemplateOptions()).build()


class _Builder(Triggers):
    """Builds one template; keeps what the resources need to name each other."""

    def __init__(self, settings: Settings, specs: list[FunctionSpec], o: TemplateOptions) -> None:
        taken = {"dispatch", "api"} & {s.name for s in specs}
        if taken:
            raise ConfigError(f"function names {sorted(taken)} are reserved on AWS")
        self.settings, self.specs, self.o = settings, specs, o
        url = settings.lake.url  # s3://bucket/prefix, or a local lake: a created bucket's root
        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        if not url.startswith("s3://"):
            bucket, prefix = "", ""
        self.default_bucket = o.existing_bucket or bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.created = not o.existing_bucket
        self.eventbridge = not self.created or o.notifications == "eventbridge"
        # A name, never a Ref to the bucket: the queue policies the bucket depends on name it.
        self.bucket: Any = ref("LakeBucketName")
        if self.created:
            fallback = sub("embedlake-${AWS::AccountId}-${AWS::Region}")
            self.bucket = {"Fn::If": ["LakeBucketNameGiven", ref("LakeBucketName"), fallback]}
        self.secret: Any = (
            att("DatabaseCluster", "MasterUserSecret.SecretArn")
            if o.create_database
            else ref("DatabaseSecretArn")
        )
        self.params: dict[str, Any] = {}
        self.res: dict[str, Any] = {}
        self.outputs: dict[str, Any] = {}
        self.notifications: list[dict[str, Any]] = []
        self.delegated: list[str] = []
        self.warnings: list[str] = []
        # serving.torch_free: releases are served by onnx/static forms, so the API runs from the
        # light image too
        self.light_api = o.api and settings.serving.torch_free
        to_batch = o.heavy_jobs and settings.runtime.engine != "ray"
        self.jobs = [s.name for s in specs if to_batch and s.name in HEAVY]
        # a name, not a Ref: every function pokes dispatch, which names them all (no cycle)
        self.dispatch_name = sub("${AWS::StackName}-dispatch")
        self.dispatch_arn = sub(
            "arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:function:${Name}",
            Name=self.dispatch_name,
        )

    def build(self) -> Template:
        self._parameters()
        if self.o.create_database:
            self.res |= resources.database(self.secret)
            self.outputs |= resources.database_outputs(self.secret)
        for spec in self.specs:
            if spec.name in self.jobs:
                self.delegated.append(spec.name)
            else:
                self._function(spec)
        self._dispatch()
        if self.o.api:
            self._api()
        if self.created:
            self._bucket()
        lake = sub(
            "s3://${Bucket}" + ("/" + self.prefix.rstrip("/") if self.prefix else ""),
            Bucket=self.bucket,
        )
        self.outputs["LakeUrl"] = {"Value": lake}
        env = {
            "EMBEDLAKE_LAKE__URL": lake,
            "EMBEDLAKE_LAKE__REGION": ref("AWS::Region"),
            "EMBEDLAKE_CATALOG__URL": self._catalog_url(),
            "EMBEDLAKE_RUNTIME__SYSTEM_DATABASE": self._catalog_url(),
            "EMBEDLAKE_RUNTIME__WATCH": "false",  # objects arrive as S3 events, not by watching
            "EMBEDLAKE_AWS_DB_SECRET_ARN": self.secret,
            **settings_env(self.settings),
        }
        functions_env = {**env, function_env_var("dispatch"): self.dispatch_name}
        if sum(len(k) + len(str(v)) for k, v in env.items()) > ENV_LIMIT - 1024:
            raise ConfigError("the workspace's settings do not fit Lambda's 4 KB of variables")
        vpc: dict[str, Any] = {
            "SubnetIds": ref("SubnetIds"),
            "SecurityGroupIds": ref("SecurityGroupIds"),
        }
        if self.o.create_database:
            vpc["SecurityGroupIds"] = [att("FunctionSecurityGroup", "GroupId")]
        body: dict[str, Any] = {
            "AWSTemplateFormatVersion": "2010-09-09",
            "Transform": "AWS::Serverless-2016-10-31",
            "Description": "embedlake: event-driven functions over an S3 lake (generated by "
            "`embedlake aws template` from the workspace's function registry)",
            "Parameters": self.params,
        }
        if self.created:
            given = {"Fn::Not": [{"Fn::Equals": [ref("LakeBucketName"), ""]}]}
            body["Conditions"] = {"LakeBucketNameGiven": given}
        if self.jobs:
            heavy = [ACCESS[name] for name in self.jobs]
            reads = tuple(sorted({p for r, _ in heavy for p in r}))
            writes = tuple(sorted({p for _, w in heavy for p in w}))
            self.res |= resources.batch(
                environment=env,
                security_groups=vpc["SecurityGroupIds"],
                s3_statements=self._s3(reads, writes),
                secret=self.secret,
                dispatch_name=self.dispatch_name,
                retries=max(s.retries for s in self.specs if s.name in self.jobs),
                timeout=max(round(s.timeout) for s in self.specs if s.name in self.jobs),
            )
            self.outputs["HeavyJobQueue"] = {"Value": ref("HeavyJobQueue")}
        body["Globals"] = {
            "Function": {"Environment": {"Variables": functions_env}, "VpcConfig": vpc}
        }
        body["Resources"] = self.res
        body["Outputs"] = self.outputs
        return Template(body, self.delegated, self.warnings, self.jobs)

    # -- parameters and the catalog ---------------------------------------------------------
    def _parameters(self) -> None:
        from sqlalchemy.engine import make_url

        p = self.params
        p["LakeBucketName"] = {
            "Type": "String",
            "Default": self.default_bucket,
            "AllowedPattern": "^$|^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$",
            "Description": "The lake's bucket"
            + (" (empty: embedlake-<account>-<region>)" if self.created else " (it exists)"),
        }
        if not self.created:
            p["LakeBucketName"]["AllowedPattern"] = "^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"
        if self._images():
            p["ImageUri"] = {"Type": "String", "Description": "The pushed image (build/image/)"}
        p["LightImageUri"] = {  # dispatch runs from it: always there
            "Type": "String",
            "Description": "The pushed light image, without torch (build/light/)",
        }
        if self.jobs:
            p |= resources.batch_parameters()
        p["SubnetIds"] = {"Type": "List<AWS::EC2::Subnet::Id>", "Description": "Private subnets"}
        catalog = make_url(self.settings.catalog_url())
        pg = catalog.get_backend_name() == "postgresql"
        p["DatabaseName"] = {"Type": "String", "Default": (pg and catalog.database) or "embedlake"}
        p["DatabaseUser"] = {"Type": "String", "Default": (pg and catalog.username) or "embedlake"}
        if self.o.create_database:
            p["VpcId"] = {"Type": "AWS::EC2::VPC::Id"}
            p["DatabaseEngineVersion"] = {"Type": "String", "Default": "16.6"}
            p["DatabaseMinCapacity"] = {"Type": "Number", "Default": 0.5, "MinValue": 0}
            p["DatabaseMaxCapacity"] = {"Type": "Number", "Default": 4, "MinValue": 1}
            return
        p["SecurityGroupIds"] = {
            "Type": "List<AWS::EC2::SecurityGroup::Id>",
            "Description": "Security groups that reach the database",
        }
        p["DatabaseHost"] = {"Type": "String", "Default": (pg and catalog.host) or ""}
        p["DatabasePort"] = {"Type": "Number", "Default": (pg and catalog.port) or 5432}
        p["DatabaseSecretArn"] = {
            "Type": "String",
            "AllowedPattern": "^arn:aws[a-z-]*:secretsmanager:.+$",
            "Description": "Secrets Manager secret holding the database password",
        }

    def _catalog_url(self) -> dict[str, Any]:
        host, port = ref("DatabaseHost"), ref("DatabasePort")
        if self.o.create_database:
            host = att("DatabaseCluster", "Endpoint.Address")
            port = att("DatabaseCluster", "Endpoint.Port")
        return sub(
            "postgresql+psycopg://${User}@${Host}:${Port}/${Name}",
            User=ref("DatabaseUser"),
            Host=host,
            Port=port,
            Name=ref("DatabaseName"),
        )

    # -- functions --------------------------------------------------------------------------
    def _full(self, name: str) -> bool:
        """Whether ``name`` runs from the full image (torch), not the light one."""
        return name in self.o.images and not (name == "api" and self.light_api)

    def _images(self) -> bool:
        names = {s.name for s in self.specs} | ({"api"} if self.o.api else set())
        return any(self._full(n) for n in names) or bool(self.jobs)

    def _code(self, name: str) -> dict[str, Any]:
        code: dict[str, Any] = {
            "PackageType": "Image",
            "ImageUri": ref("ImageUri" if self._full(name) else "LightImageUri"),
            "ImageConfig": {"Command": [f"{HANDLERS}.{handler_name(name)}"]},
        }
        if name in self.o.images:  # model and index files
            code["EphemeralStorage"] = {"Size": IMAGE_TMP_MB}
        return code

    def _memory(self, name: str) -> int:
        fallback = IMAGE_MEMORY if name in self.o.images else LIGHT_MEMORY
        mb = self.o.memory.get(name, DEFAULT_MEMORY.get(name, fallback))
        if not 128 <= mb <= 10240:
            raise ConfigError(f"memory of {name}: {mb} MB is outside Lambda's 128-10240 MB")
        return mb

    def _s3(self, reads: tuple[str, ...], writes: tuple[str, ...]) -> list[dict[str, Any]]:
        """Object access under the lake's prefix only, listing included."""

        def keys(prefixes: tuple[str, ...]) -> list[Any]:
            return [
                sub(
                    "arn:${AWS::Partition}:s3:::${Bucket}/" + self.prefix + p + "*",
                    Bucket=self.bucket,
                )
                for p in prefixes
            ]

        bucket = sub("arn:${AWS::Partition}:s3:::${Bucket}", Bucket=self.bucket)
        listed = {"s3:prefix": [self.prefix + p + "*" for p in reads]}
        out = [
            allow(["s3:GetObject"], keys(reads)),
            allow(["s3:ListBucket"], [bucket], StringLike=listed),
        ]
        if writes:
            out.append(allow(["s3:PutObject", "s3:AbortMultipartUpload"], keys(writes)))
        return out

    def _role(self, cid: str, name: str, statements: list[dict[str, Any]]) -> dict[str, Any]:
        trust = {
            "Effect": "Allow",
            "Principal": {"Service": "lambda.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
        statements = [allow(["secretsmanager:GetSecretValue"], [self.secret]), *statements]
        if name != "dispatch":  # after emitting, a function pokes dispatch
            statements.append(allow(["lambda:InvokeFunction"], [self.dispatch_arn]))
        self.res[f"{cid}Role"] = {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [trust]},
                # logs, and the network interfaces a function in a VPC needs
                "ManagedPolicyArns": [
                    sub(
                        "arn:${AWS::Partition}:iam::aws:policy/service-role/"
                        "AWSLambdaVPCAccessExecutionRole"
                    )
                ],
                "Policies": [
                    {
                        "PolicyName": f"embedlake-{name}",
                        "PolicyDocument": {"Version": "2012-10-17", "Statement": statements},
                    }
                ],
            },
        }
        return att(f"{cid}Role", "Arn")

    def _function(self, spec: FunctionSpec) -> None:
        cid, name = logical_id(spec.name), spec.name
        timeout = min(round(spec.timeout), LAMBDA_MAX_TIMEOUT)
        delegated = spec.timeout > LAMBDA_MAX_TIMEOUT
        if delegated:
            self.delegated.append(name)
            if self.settings.runtime.engine != "ray":
                self.warnings.append(
                    f"{name} may run {spec.timeout / 3600:g} h but Lambda stops it at 15 minutes:"
                    " set runtime.engine = 'ray' and runtime.ray_address for its heavy steps"
                )
        dlq = f"{cid}DeadLetterQueue"
        self.res[dlq] = {
            "Type": "AWS::SQS::Queue",
            "Properties": {"MessageRetentionPeriod": 1_209_600, "SqsManagedSseEnabled": True},
        }
        self.outputs[f"{dlq}Url"] = {"Value": ref(dlq)}
        reads, writes = ACCESS.get(name, (("",), ("",)))
        statements = self._s3(reads, writes)
        events: dict[str, Any] = {}
        props: dict[str, Any] = {}
        if object_triggers(spec):
            queue = self._queue(cid, spec, timeout, dlq)
            consume = [
                "sqs:ReceiveMessage",
                "sqs:DeleteMessage",
                "sqs:GetQueueAttributes",
                "sqs:ChangeMessageVisibility",
            ]
            statements.append(allow(consume, [queue]))
            # one object per invocation, as in the local runtime: the spec's timeout is per event
            source = {
                "Queue": queue,
                "BatchSize": 1,
                "FunctionResponseTypes": ["ReportBatchItemFailures"],
            }
            if spec.concurrency >= 2:  # pollers stop at the reserved concurrency, not throttled
                source["ScalingConfig"] = {"MaximumConcurrency": spec.concurrency}
            events["Objects"] = {"Type": "SQS", "Properties": source}
        crons = [t.cron for t in spec.triggers if t.event_type == SCHEDULE and t.cron]
        for i, expression in enumerate(crons):
            events[f"Schedule{i}"] = {
                "Type": "Schedule",
                "Properties": {
                    "Schedule": aws_cron(expression),
                    "Description": f"{name}: {expression}",
                },
            }
        if crons or routed(spec):  # invoked asynchronously: Lambda retries, then the DLQ
            if spec.retries > 2:
                self.warnings.append(f"{name}: Lambda retries an asynchronous call twice at most")
            props["EventInvokeConfig"] = {"MaximumRetryAttempts": min(spec.retries, 2)}
            props["DeadLetterQueue"] = {"Type": "SQS", "TargetArn": att(dlq, "Arn")}
            statements.append(allow(["sqs:SendMessage"], [att(dlq, "Arn")]))
        props |= {
            **self._code(name),
            "Description": f"embedlake {name}: " + ", ".join(t.describe() for t in spec.triggers),
            "Timeout": timeout,
            "MemorySize": self._memory(name),
            "ReservedConcurrentExecutions": spec.concurrency,
            "Role": self._role(cid, name, statements),
        }
        if events:
            props["Events"] = events
        meta = {
            "function": name,
            "specTimeout": spec.timeout,
            "delegated": delegated,
            "retries": spec.retries,
        }
        self.res[f"{cid}Function"] = {
            "Type": "AWS::Serverless::Function",
            "Metadata": {"embedlake": meta},
            "Properties": props,
        }

    def _dispatch(self) -> None:
        """Reads the outbox every minute; invokes the on_event functions (and only those)."""
        targets = [s.name for s in self.specs if routed(s) and s.name not in self.jobs]
        invoke = [att(f"{logical_id(n)}Function", "Arn") for n in targets]
        statements = [allow(["lambda:InvokeFunction"], invoke)] if invoke else []
        variables = {function_env_var(n): ref(f"{logical_id(n)}Function") for n in targets}
        if self.jobs:
            queue, definition = ref("HeavyJobQueue"), ref("HeavyJobDefinition")
            statements.append(allow(["batch:SubmitJob"], [queue, definition]))
            variables |= {
                "EMBEDLAKE_AWS_BATCH_JOB_QUEUE": queue,
                "EMBEDLAKE_AWS_BATCH_JOB_DEFINITION": definition,
            }
        self.res["DispatchFunction"] = {
            "Type": "AWS::Serverless::Function",
            "Metadata": {"embedlake": {"function": "dispatch", "delegated": False}},
            "Properties": {
                **self._code("dispatch"),
                "FunctionName": self.dispatch_name,
                "Timeout": 60,
                "MemorySize": self._memory("dispatch"),
                "Description": "embedlake dispatch: routes outbox events to functions",
                "ReservedConcurrentExecutions": 1,  # one cursor over the outbox
                "EventInvokeConfig": {"MaximumRetryAttempts": 0},  # the next minute is the retry
                "Environment": {"Variables": variables},
                "Events": {
                    "EveryMinute": {
                        "Type": "Schedule",
                        "Properties": {"Schedule": "rate(1 minute)"},
                    }
                },
                "Role": self._role("Dispatch", "dispatch", statements),
            },
        }

    def _api(self) -> None:
        auth = {"iam": "AWS_IAM", "none": "NONE"}[self.o.api_auth]
        if auth == "NONE":
            self.warnings.append(
                "api: the Function URL is public; API keys still guard it (api.auth = 'keys')"
            )
        reads, writes = ACCESS["api"]
        self.res["ApiFunction"] = {
            "Type": "AWS::Serverless::Function",
            "Metadata": {"embedlake": {"function": "api", "delegated": False}},
            "Properties": {
                **self._code("api"),
                "Timeout": 60,
                "MemorySize": self._memory("api"),
                "Description": "embedlake HTTP API (search, embed, admin) through Mangum",
                "FunctionUrlConfig": {"AuthType": auth},
                "Role": self._role("Api", "api", self._s3(reads, writes)),
            },
        }
        self.outputs["ApiUrl"] = {"Value": att("ApiFunctionUrl", "FunctionUrl")}


def routed(spec: FunctionSpec) -> bool:
    """Whether ``dispatch`` invokes ``spec`` (domain events; AWS delivers objects and ticks)."""
    return any(t.event_type not in _NOT_ROUTED for t in spec.triggers)
