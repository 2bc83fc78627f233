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

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from embedlake.config import Settings
from embedlake.errors import ConfigError
from embedlake.events import OBJECT_CREATED, OBJECT_REMOVED, SCHEDULE
from embedlake.functions import Functions, FunctionSpec

LAMBDA_MAX_TIMEOUT = 900  # seconds: Lambda stops every invocation at 15 minutes
HANDLERS = "embedlake.aws.handlers"
# Functions that load a model (torch) do not fit a 250 MB zip and run from the container image;
# register-model is one: it loads a model to verify it before registering it.
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
ZIP_MEMORY, IMAGE_MEMORY = 1024, 3008
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
# Settings the template sets itself (lake, catalog, runtime queue) or that are secrets: never copied.
OWN_SETTINGS = ("lake.", "catalog.", "runtime.system_database", "runtime.watch", "runtime.executor")
ENV_LIMIT = 4096  # bytes: Lambda's limit on all of a function's environment variables together
_S3_EVENTS = {OBJECT_CREATED: "s3:ObjectCreated:*", OBJECT_REMOVED: "s3:ObjectRemoved:*"}
_EB_EVENTS = {OBJECT_CREATED: "Object Created", OBJECT_REMOVED: "Object Deleted"}
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
    images: frozenset[str] = IMAGE_FUNCTIONS  # functions run from the container image
    code_uri: str = "zip/"  # the zip folder, relative to the template


@dataclass
class Template:
    body: dict[str, Any]
    delegated: list[str]  # functions whose spec timeout exceeds Lambda's limit
    warnings: list[str]


def logical_id(name: str) -> str:
    """``embed-new`` → ``EmbedNew`` (CloudFormation ids are alphanumeric)."""
    return "".join(p[:1].upper() + p[1:] for p in re.split(r"[^A-Za-z0-9]+", name) if p)


def handler_name(name: str) -> str:
    """The entry point in ``embedlake.aws.handlers``: ``embed-new`` → ``embed_new``."""
    python = name.replace("-", "_")
    if not python.isidentifier():
        raise ConfigError(f"function {name!r}: no Python entry point can be named after it")
    return python


def function_env_var(name: str) -> str:
    """The variable holding the deployed name of function ``name``; ``dispatch`` reads it."""
    return f"EMBEDLAKE_AWS_FUNCTION_{handler_name(name).upper()}"


def key_filter(pattern: str) -> tuple[str, str]:
    """The literal prefix and suffix of a key glob (S3 filters know no wildcards; the handler
    still matches the full pattern)."""
    wild = [i for i, c in enumerate(pattern) if c in "*?["]
    return (pattern, "") if not wild else (pattern[: wild[0]], pattern[wild[-1] + 1 :])


_DAYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"]
_ALIASES = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}


def aws_cron(expression: str) -> str:
    """A five-field cron expression as EventBridge's ``cron(min hour dom month dow year)``.

    EventBridge wants ``?`` in one of the day fields, numbers days 1-7 from Sunday (so names are
    written instead) and reads ``*/n`` as ``0/n``; cron's "day of month OR day of week" has no
    equivalent there.
    """
    fields = _ALIASES.get(expression.strip(), expression).split()
    if len(fields) != 5:
        raise ConfigError(f"schedule {expression!r}: EventBridge needs a five-field cron")
    minute, hour = (re.sub(r"^\*/", "0/", f) for f in fields[:2])
    dom, month = (re.sub(r"^\*/", "1/", f) for f in fields[2:4])
    dow = fields[4]
    if dow == "*":
        dow = "?"
    elif dom == "*":
        dom, dow = "?", _days(dow, expression)
    else:
        raise ConfigError(f"schedule {expression!r}: EventBridge cannot restrict both day fields")
    return f"cron({minute} {hour} {dom} {month} {dow} *)"


def _days(dow: str, expression: str) -> str:
    names: list[str] = []
    for part in dow.upper().split(","):
        if "/" in part or not re.fullmatch(r"[0-7A-Z]+(-[0-7A-Z]+)?", part):
            raise ConfigError(f"schedule {expression!r}: day of week {part!r} is not supported")
        ends = [_DAYS.index(p) if p in _DAYS else int(p) for p in part.split("-")]
        if ends[-1] < ends[0] or max(ends) > 7:
            raise ConfigError(f"schedule {expression!r}: day range {part!r} is not supported")
        names += [_DAYS[d] for d in range(ends[0], ends[-1] + 1) if _DAYS[d] not in names]
    return ",".join(names)


def settings_env(settings: Settings) -> dict[str, str]:
    """The workspace's non-default settings as ``EMBEDLAKE_*`` variables (lists as JSON), so the
    functions run with the settings the workspace has; secrets and what the template sets are left
    out."""
    import json

    def flat(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in data.items():
            if isinstance(value, Mapping):
                out |= flat(value, f"{prefix}{key}.")
            else:
                out[prefix + key] = value
        return out

    mine = flat(settings.model_dump(mode="json", exclude={"workspace"}))
    default = flat(Settings().model_dump(mode="json", exclude={"workspace"}))
    env = {}
    for key, value in mine.items():
        if value == default.get(key) or key.startswith(OWN_SETTINGS) or key == "api.key_pepper":
            continue
        text = (
            json.dumps(value)
            if isinstance(value, list | dict)
            else str(value).lower()
            if (isinstance(value, bool))
            else str(value)
        )
        env["EMBEDLAKE_" + key.upper().replace(".", "__")] = text
    return env


def build_template(
    settings: Settings, functions: Functions, options: TemplateOptions | None = None
) -> Template:
    """The SAM template deploying ``functions`` with the workspace's ``settings``."""
    return _Builder(settings, list(functions), options or TemplateOptions()).build()


def dump_yaml(body: Mapping[str, Any]) -> str:
    """The template as YAML (long-form intrinsics, which every CloudFormation tool reads)."""
    import yaml  # PyYAML, installed with dbos (a core dependency)

    text: str = yaml.safe_dump(dict(body), sort_keys=False, width=100)
    return text


def object_triggers(spec: FunctionSpec) -> list[tuple[str, str, str]]:
    """(event type, key prefix, key suffix) of each object trigger, without repeats."""
    seen: list[tuple[str, str, str]] = []
    for t in spec.triggers:
        if t.event_type in _S3_EVENTS and t.pattern is not None:
            item = (t.event_type, *key_filter(t.pattern))
            if item not in seen:
                seen.append(item)
    return seen


def _sub(text: str, **names: Any) -> dict[str, Any]:
    return {"Fn::Sub": [text, names] if names else text}


def _ref(name: str) -> dict[str, str]:
    return {"Ref": name}


def _att(name: str, attribute: str) -> dict[str, str]:
    return {"Fn::GetAtt": f"{name}.{attribute}"}


def _allow(actions: list[str], resources: list[Any], **condition: Any) -> dict[str, Any]:
    statement = {"Effect": "Allow", "Action": actions, "Resource": resources}
    return statement | ({"Condition": condition} if condition else {})


class _Builder:
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
        self.bucket: Any = _ref("LakeBucketName")
        if self.created:
            fallback = _sub("embedlake-${AWS::AccountId}-${AWS::Region}")
            self.bucket = {"Fn::If": ["LakeBucketNameGiven", _ref("LakeBucketName"), fallback]}
        self.secret: Any = (
            _att("DatabaseCluster", "MasterUserSecret.SecretArn")
            if o.create_database
            else _ref("DatabaseSecretArn")
        )
        self.params: dict[str, Any] = {}
        self.res: dict[str, Any] = {}
        self.outputs: dict[str, Any] = {}
        self.notifications: list[dict[str, Any]] = []
        self.delegated: list[str] = []
        self.warnings: list[str] = []

    def build(self) -> Template:
        self._parameters()
        if self.o.create_database:
            self._database()
        for spec in self.specs:
            self._function(spec)
        self._dispatch()
        if self.o.api:
            self._api()
        if self.created:
            self._bucket()
        lake = _sub(
            "s3://${Bucket}" + ("/" + self.prefix.rstrip("/") if self.prefix else ""),
            Bucket=self.bucket,
        )
        self.outputs["LakeUrl"] = {"Value": lake}
        env = {
            "EMBEDLAKE_LAKE__URL": lake,
            "EMBEDLAKE_LAKE__REGION": _ref("AWS::Region"),
            "EMBEDLAKE_CATALOG__URL": self._catalog_url(),
            "EMBEDLAKE_RUNTIME__SYSTEM_DATABASE": self._catalog_url(),
            "EMBEDLAKE_RUNTIME__WATCH": "false",  # objects arrive as S3 events, not by watching
            "EMBEDLAKE_AWS_DB_SECRET_ARN": self.secret,
            **settings_env(self.settings),
        }
        if sum(len(k) + len(str(v)) for k, v in env.items()) > ENV_LIMIT - 1024:
            raise ConfigError("the workspace's settings do not fit Lambda's 4 KB of variables")
        vpc: dict[str, Any] = {
            "SubnetIds": _ref("SubnetIds"),
            "SecurityGroupIds": _ref("SecurityGroupIds"),
        }
        if self.o.create_database:
            vpc["SecurityGroupIds"] = [_att("FunctionSecurityGroup", "GroupId")]
        body: dict[str, Any] = {
            "AWSTemplateFormatVersion": "2010-09-09",
            "Transform": "AWS::Serverless-2016-10-31",
            "Description": "embedlake: event-driven functions over an S3 lake (generated by "
            "`embedlake aws template` from the workspace's function registry)",
            "Parameters": self.params,
        }
        if self.created:
            given = {"Fn::Not": [{"Fn::Equals": [_ref("LakeBucketName"), ""]}]}
            body["Conditions"] = {"LakeBucketNameGiven": given}
        body["Globals"] = {"Function": {"Environment": {"Variables": env}, "VpcConfig": vpc}}
        body["Resources"] = self.res
        body["Outputs"] = self.outputs
        return Template(body, self.delegated, self.warnings)

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
        host, port = _ref("DatabaseHost"), _ref("DatabasePort")
        if self.o.create_database:
            host = _att("DatabaseCluster", "Endpoint.Address")
            port = _att("DatabaseCluster", "Endpoint.Port")
        return _sub(
            "postgresql+psycopg://${User}@${Host}:${Port}/${Name}",
            User=_ref("DatabaseUser"),
            Host=host,
            Port=port,
            Name=_ref("DatabaseName"),
        )

    def _database(self) -> None:
        """Aurora PostgreSQL Serverless v2 with a password RDS keeps in Secrets Manager."""
        vpc = _ref("VpcId")
        self.res["FunctionSecurityGroup"] = {
            "Type": "AWS::EC2::SecurityGroup",
            "Properties": {"GroupDescription": "embedlake functions", "VpcId": vpc},
        }
        ingress = {
            "IpProtocol": "tcp",
            "FromPort": 5432,
            "ToPort": 5432,
            "SourceSecurityGroupId": _att("FunctionSecurityGroup", "GroupId"),
        }
        self.res["DatabaseSecurityGroup"] = {
            "Type": "AWS::EC2::SecurityGroup",
            "Properties": {
                "GroupDescription": "embedlake catalog",
                "VpcId": vpc,
                "SecurityGroupIngress": [ingress],
            },
        }
        self.res["DatabaseSubnetGroup"] = {
            "Type": "AWS::RDS::DBSubnetGroup",
            "Properties": {"DBSubnetGroupDescription": "embedlake", "SubnetIds": _ref("SubnetIds")},
        }
        scaling = {
            "MinCapacity": _ref("DatabaseMinCapacity"),
            "MaxCapacity": _ref("DatabaseMaxCapacity"),
        }
        self.res["DatabaseCluster"] = {
            "Type": "AWS::RDS::DBCluster",
            "DeletionPolicy": "Snapshot",
            "UpdateReplacePolicy": "Snapshot",
            "Properties": {
                "Engine": "aurora-postgresql",
                "EngineVersion": _ref("DatabaseEngineVersion"),
                "DatabaseName": _ref("DatabaseName"),
                "MasterUsername": _ref("DatabaseUser"),
                "ManageMasterUserPassword": True,
                "DBSubnetGroupName": _ref("DatabaseSubnetGroup"),
                "VpcSecurityGroupIds": [_att("DatabaseSecurityGroup", "GroupId")],
                "StorageEncrypted": True,
                "ServerlessV2ScalingConfiguration": scaling,
            },
        }
        self.res["DatabaseInstance"] = {
            "Type": "AWS::RDS::DBInstance",
            "Properties": {
                "Engine": "aurora-postgresql",
                "DBInstanceClass": "db.serverless",
                "DBClusterIdentifier": _ref("DatabaseCluster"),
            },
        }
        self.outputs["DatabaseEndpoint"] = {"Value": _att("DatabaseCluster", "Endpoint.Address")}
        self.outputs["DatabaseSecretArn"] = {"Value": self.secret}

    # -- functions --------------------------------------------------------------------------
    def _images(self) -> bool:
        names = {s.name for s in self.specs} | ({"api"} if self.o.api else set())
        return bool(names & self.o.images)

    def _code(self, name: str) -> dict[str, Any]:
        entry = f"{HANDLERS}.{handler_name(name)}"
        if name in self.o.images:
            return {
                "PackageType": "Image",
                "ImageUri": _ref("ImageUri"),
                "ImageConfig": {"Command": [entry]},
                "EphemeralStorage": {"Size": IMAGE_TMP_MB},
            }
        return {
            "PackageType": "Zip",
            "Runtime": "python3.11",
            "Handler": entry,
            "CodeUri": self.o.code_uri,
        }

    def _memory(self, name: str) -> int:
        fallback = IMAGE_MEMORY if name in self.o.images else ZIP_MEMORY
        mb = self.o.memory.get(name, DEFAULT_MEMORY.get(name, fallback))
        if not 128 <= mb <= 10240:
            raise ConfigError(f"memory of {name}: {mb} MB is outside Lambda's 128-10240 MB")
        return mb

    def _s3(self, reads: tuple[str, ...], writes: tuple[str, ...]) -> list[dict[str, Any]]:
        """Object access under the lake's prefix only, listing included."""

        def keys(prefixes: tuple[str, ...]) -> list[Any]:
            return [
                _sub(
                    "arn:${AWS::Partition}:s3:::${Bucket}/" + self.prefix + p + "*",
                    Bucket=self.bucket,
                )
                for p in prefixes
            ]

        bucket = _sub("arn:${AWS::Partition}:s3:::${Bucket}", Bucket=self.bucket)
        listed = {"s3:prefix": [self.prefix + p + "*" for p in reads]}
        out = [
            _allow(["s3:GetObject"], keys(reads)),
            _allow(["s3:ListBucket"], [bucket], StringLike=listed),
        ]
        if writes:
            out.append(_allow(["s3:PutObject", "s3:AbortMultipartUpload"], keys(writes)))
        return out

    def _role(self, cid: str, name: str, statements: list[dict[str, Any]]) -> dict[str, Any]:
        trust = {
            "Effect": "Allow",
            "Principal": {"Service": "lambda.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
        statements = [_allow(["secretsmanager:GetSecretValue"], [self.secret]), *statements]
        self.res[f"{cid}Role"] = {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [trust]},
                # logs, and the network interfaces a function in a VPC needs
                "ManagedPolicyArns": [
                    _sub(
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
        return _att(f"{cid}Role", "Arn")

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
        self.outputs[f"{dlq}Url"] = {"Value": _ref(dlq)}
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
            statements.append(_allow(consume, [queue]))
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
            props["DeadLetterQueue"] = {"Type": "SQS", "TargetArn": _att(dlq, "Arn")}
            statements.append(_allow(["sqs:SendMessage"], [_att(dlq, "Arn")]))
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

    def _queue(self, cid: str, spec: FunctionSpec, timeout: int, dlq: str) -> dict[str, str]:
        """The function's input queue, fed by the bucket or by EventBridge rules."""
        queue = f"{cid}Queue"
        redrive = {"deadLetterTargetArn": _att(dlq, "Arn"), "maxReceiveCount": spec.retries + 1}
        self.res[queue] = {
            "Type": "AWS::SQS::Queue",
            "Properties": {
                "VisibilityTimeout": min(6 * timeout, 43_200),  # AWS: six times the function's
                "RedrivePolicy": redrive,
                "SqsManagedSseEnabled": True,
            },
        }
        self.outputs[f"{queue}Url"] = {"Value": _ref(queue)}
        sources: list[Any] = []
        for i, (event_type, prefix, suffix) in enumerate(object_triggers(spec)):
            if self.eventbridge:
                detail: dict[str, Any] = {"bucket": {"name": [self.bucket]}}
                if self.prefix + prefix:
                    detail["object"] = {"key": [{"prefix": self.prefix + prefix}]}
                pattern = {
                    "source": ["aws.s3"],
                    "detail-type": [_EB_EVENTS[event_type]],
                    "detail": detail,
                }
                rule = f"{cid}Rule{i}"
                self.res[rule] = {
                    "Type": "AWS::Events::Rule",
                    "Properties": {
                        "EventPattern": pattern,
                        "State": "ENABLED",
                        "Targets": [{"Arn": _att(queue, "Arn"), "Id": "queue"}],
                    },
                }
                sources.append(_att(rule, "Arn"))
                continue
            rules = [{"Name": "prefix", "Value": self.prefix + prefix}]
            rules += [{"Name": "suffix", "Value": suffix}] if suffix else []
            self._no_overlap(spec.name, _S3_EVENTS[event_type], self.prefix + prefix, suffix)
            self.notifications.append(
                {
                    "Event": _S3_EVENTS[event_type],
                    "Queue": _att(queue, "Arn"),
                    "Filter": {"S3Key": {"Rules": rules}},
                    "_function": spec.name,
                }
            )
        if not sources:
            sources = [_sub("arn:${AWS::Partition}:s3:::${Bucket}", Bucket=self.bucket)]
        service = "events.amazonaws.com" if self.eventbridge else "s3.amazonaws.com"
        allow = {
            "Effect": "Allow",
            "Principal": {"Service": service},
            "Action": "sqs:SendMessage",
            "Resource": _att(queue, "Arn"),
            "Condition": {"ArnEquals": {"aws:SourceArn": sources}},
        }
        self.res[f"{queue}Policy"] = {
            "Type": "AWS::SQS::QueuePolicy",
            "Properties": {
                "Queues": [_ref(queue)],
                "PolicyDocument": {"Version": "2012-10-17", "Statement": [allow]},
            },
        }
        return _att(queue, "Arn")

    def _no_overlap(self, name: str, event: str, prefix: str, suffix: str) -> None:
        """S3 refuses two notifications whose filters overlap for the same event type."""
        for other in self.notifications:
            rules = {r["Name"]: r["Value"] for r in other["Filter"]["S3Key"]["Rules"]}
            p, s = rules["prefix"], rules.get("suffix", "")
            if (
                other["Event"] == event
                and (p.startswith(prefix) or prefix.startswith(p))
                and (s.endswith(suffix) or suffix.endswith(s))
            ):
                raise ConfigError(
                    f"functions {other['_function']} and {name} watch overlapping keys, which "
                    "S3 notifications cannot deliver to two queues: use EventBridge notifications"
                )

    def _dispatch(self) -> None:
        """Reads the outbox every minute; invokes the on_event functions (and only those)."""
        targets = [s.name for s in self.specs if routed(s)]
        invoke = [_att(f"{logical_id(n)}Function", "Arn") for n in targets]
        statements = [_allow(["lambda:InvokeFunction"], invoke)] if invoke else []
        self.res["DispatchFunction"] = {
            "Type": "AWS::Serverless::Function",
            "Metadata": {"embedlake": {"function": "dispatch", "delegated": False}},
            "Properties": {
                **self._code("dispatch"),
                "Timeout": 60,
                "MemorySize": self._memory("dispatch"),
                "Description": "embedlake dispatch: routes outbox events to functions",
                "ReservedConcurrentExecutions": 1,  # one cursor over the outbox
                "EventInvokeConfig": {"MaximumRetryAttempts": 0},  # the next minute is the retry
                "Environment": {
                    "Variables": {
                        function_env_var(n): _ref(f"{logical_id(n)}Function") for n in targets
                    }
                },
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
        self.outputs["ApiUrl"] = {"Value": _att("ApiFunctionUrl", "FunctionUrl")}

    def _bucket(self) -> None:
        """The lake bucket, kept when the stack is deleted (raw/ is the audit trail)."""
        config: dict[str, Any] = {"EventBridgeConfiguration": {"EventBridgeEnabled": True}}
        depends = []
        if not self.eventbridge:
            config = {
                "QueueConfigurations": [
                    {k: v for k, v in n.items() if k != "_function"} for n in self.notifications
                ]
            }
            depends = [r for r, v in self.res.items() if v["Type"] == "AWS::SQS::QueuePolicy"]
        block = dict.fromkeys(
            ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"),
            True,
        )
        self.res["LakeBucket"] = {
            "Type": "AWS::S3::Bucket",
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
            **({"DependsOn": depends} if depends else {}),
            "Properties": {
                "BucketName": self.bucket,
                "PublicAccessBlockConfiguration": block,
                "NotificationConfiguration": config,
            },
        }
        self.outputs["LakeBucket"] = {"Value": _ref("LakeBucket")}


def routed(spec: FunctionSpec) -> bool:
    """Whether ``dispatch`` invokes ``spec`` (domain events; AWS delivers objects and ticks)."""
    return any(t.event_type not in _NOT_ROUTED for t in spec.triggers)
