"""The Lambda entry points, invoked with recorded AWS payload shapes (tests/aws/events/) against
moto's S3 over HTTP and the throwaway PostgreSQL: ingest from S3 (direct, SQS, EventBridge),
partial batch failures, schedules, dispatch of chained events, and the search API via Mangum."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from packaging.requirements import Requirement
from sqlalchemy import make_url

from embedlake import Workspace, errors
from embedlake.aws.environment import ENV_WORKSPACE
from embedlake.aws.payloads import LakeLocation, ObjectNotice, Tick, invoke_payload, messages, units
from embedlake.cli.releases import register_and_build as _build_now
from embedlake.config import Settings, default_toml
from embedlake.errors import ConfigError, InputError
from embedlake.events import DOCUMENTS_CHANGED, OBJECT_CREATED, SCHEDULE, Event
from embedlake.ingest import ingest_path
from embedlake.lake import created_event_id
from embedlake.runtime.core import CURSOR
from embedlake.training.train import train
from tests.conftest import production_environ, write_jsonl
from tests.servers import S3, start_moto_process

EVENTS = Path(__file__).parent / "events"
FIXTURE_BUCKET = "embedlake-test-bucket"  # the bucket named in the recorded payloads
FAST = {"EMBEDLAKE_EMBED__MODEL": "lsa", "EMBEDLAKE_MAP__METHOD": "pca"}
FRUIT = "".join(
    json.dumps({"_id": f"f{i}", "text": f"{fruit} pie, recipe number {i}"}) + "\n"
    for i, fruit in enumerate(["apple", "banana", "cherry", "plum", "pear", "quince"])
).encode()

JOBS = Path(__file__).parent / "jobs"  # a user's functions module (runtime.modules)
RUNNER = Path(__file__).parent / "lambda_runner.py"
# -- how the entry points are reached -------------------------------------------------------------


@dataclass
class Artifact:
    """`embedlake aws package`'s output, zipped and unpacked into clean folders (what `docker
    build` copies into each image), and what each image's process may import."""

    light_root: Path
    image_root: Path
    manifest: dict[str, Any]
    light_blocked: frozenset[str]  # installed here, not in the light image's requirements

    def package_of(self, entry: str) -> str:
        """The image an entry point runs from (one not deployed, as a test calls it: light)."""
        function = self.manifest["functions"].get(entry.replace("_", "-"))
        return "light" if function is None else str(function["package"])


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(requirements: list[str]) -> set[str]:
    """The distributions ``requirements`` install, from the installed packages' metadata."""
    found: set[str] = set()
    todo = [(Requirement(r), "") for r in requirements]
    while todo:
        req, extra = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": extra}):
            continue
        name = _canonical(req.name)
        first = name not in found
        found.add(name)
        wanted = [""] * first + sorted(req.extras)
        try:
            lines = metadata.requires(req.name) or []
        except metadata.PackageNotFoundError:  # not installed here (awslambdaric): not importable
            lines = []
        todo += [(Requirement(line), want) for line in lines for want in wanted]
    return found


def not_in(requirements: list[str]) -> frozenset[str]:
    """Top-level modules installed here whose distributions the requirements do not install."""
    allowed = closure(requirements)
    return frozenset(
        module
        for module, dists in metadata.packages_distributions().items()
        if not {_canonical(d) for d in dists} & allowed and module.isidentifier()
    ) - {"embedlake", "embedlake_test_jobs"}


@pytest.fixture(scope="session")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Artifact:
    from embedlake.aws.package import package

    folder = tmp_path_factory.mktemp("packaging")
    (folder / "embedlake.toml").write_text(
        default_toml().replace("modules = []", 'modules = ["embedlake_test_jobs"]')
    )
    sys.path.insert(0, str(JOBS))
    try:
        # serving.torch_free: the API is packaged in the light image, without torch
        settings = Settings.load(folder, {"EMBEDLAKE_SERVING__TORCH_FREE": "true"})
        manifest = package(settings, folder / "build")
    finally:
        sys.path.remove(str(JOBS))
        sys.modules.pop("embedlake_test_jobs", None)
    roots = {}
    for kind in ("light", "image"):
        archive = shutil.make_archive(str(folder / kind), "zip", folder / "build" / kind)
        roots[kind] = tmp_path_factory.mktemp(f"unpacked-{kind}")
        shutil.unpack_archive(archive, roots[kind])
    blocked = not_in(manifest["light"]["requirements"])
    return Artifact(roots["light"] / "app", roots["image"] / "app", manifest, blocked)


class Runner:
    """One warm container: the runner process over one unpacked artifact. A changed environment
    is a new deployment, so a new container."""

    def __init__(self, root: Path, blocked: str) -> None:
        self.root, self.blocked = root, blocked
        self.process: subprocess.Popen[str] | None = None
        self.environ: dict[str, str] = {}

    def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        if self.process is None or self.environ != dict(os.environ):
            self.close()
            self.environ = dict(os.environ)
            env = {**self.environ, "PYTHONPATH": str(self.root), "PYTHONSAFEPATH": "1"}
            self.process = subprocess.Popen(
                [sys.executable, str(RUNNER), str(self.root), self.blocked],
                cwd=self.root,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the Lambda container exited ({self.process.wait()})")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def close(self) -> None:
        if self.process is not None:
            assert self.process.stdin is not None and self.process.stdout is not None
            self.process.stdin.close()
            self.process.wait(timeout=60)
            self.process.stdout.close()
            self.process = None


class Lambda:
    """Invokes the entry points of the unpacked artifact: the light image's in a container that
    cannot import what its requirements do not install (torch, transformers, …), the full image's
    in another."""

    def __init__(self, artifact: Artifact) -> None:
        self.artifact = artifact
        self.runners = {
            "light": Runner(artifact.light_root, ",".join(sorted(artifact.light_blocked))),
            "image": Runner(artifact.image_root, ""),
        }

    def invoke(self, entry: str, payload: dict[str, Any]) -> dict[str, Any]:
        """As the Lambda runtime does: a JSON payload in, the result as JSON or the error."""
        reply = self.runners[self.artifact.package_of(entry)].ask(
            {"entry": entry, "payload": payload}
        )
        if "errorType" in reply:
            raise getattr(errors, reply["errorType"], RuntimeError)(reply["errorMessage"])
        result: dict[str, Any] = reply["result"]
        return result

    def api_state(self) -> int | None:
        state: int | None = self.runners[self.artifact.package_of("api")].ask({"probe": "api"})[
            "api"
        ]
        return state

    def close(self) -> None:
        for runner in self.runners.values():
            runner.close()


@pytest.fixture
def installed(artifact: Artifact) -> Iterator[Lambda]:
    """The packaged artifact, invoked as Lambda would (a file missing from it fails the test)."""
    lam = Lambda(artifact)
    yield lam
    lam.close()


@pytest.fixture
def env(
    postgres: object, s3: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    """The Lambda's environment (a fresh database and bucket), set in os.environ where the
    containers read it."""
    values = {**production_environ(postgres, s3), **FAST}
    for name in list(os.environ):
        if name.startswith("EMBEDLAKE_"):
            monkeypatch.delenv(name)
    for name, value in {**values, ENV_WORKSPACE: str(tmp_path / "lambda")}.items():
        monkeypatch.setenv(name, value)
    return values


@pytest.fixture
def admin(env: dict[str, str], tmp_path: Path) -> Iterator[Workspace]:
    """The deploy step (`embedlake migrate`) and a view of the catalog and lake for assertions."""
    with Workspace.init(tmp_path / "admin", environ=env) as ws:
        yield ws


@pytest.fixture
def bucket(env: dict[str, str]) -> str:
    return env["EMBEDLAKE_LAKE__URL"][len("s3://") :].split("/")[0]


def payload(name: str, bucket: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((EVENTS / name).read_text().replace(FIXTURE_BUCKET, bucket))
    return loaded


def _events(ws: Workspace, kind: str) -> list[Event]:
    return [e for e in ws.catalog.events.all() if e.type == kind]


# -- S3-triggered functions ------------------------------------------------------------------------


def test_an_s3_put_is_ingested_once_however_often_and_however_it_arrives(
    installed: Lambda, admin: Workspace, s3: S3, bucket: str
) -> None:
    put = s3.client().put_object(Bucket=bucket, Key="lake/raw/fruit/pies.jsonl", Body=FRUIT)
    event_id = created_event_id("raw/fruit/pies.jsonl", put["ETag"].strip('"'))

    out = installed.invoke("ingest", payload("s3-put.json", bucket))
    [done] = out["invocations"]
    assert (done["invocation"], done["status"], done["emitted"]) == (
        f"{event_id}:ingest",
        "succeeded",
        1,
    )
    assert admin.catalog.documents.count() == 6
    assert [e.id for e in _events(admin, OBJECT_CREATED) if e.key == "raw/fruit/pies.jsonl"] == [
        event_id
    ]
    [changed] = _events(admin, DOCUMENTS_CHANGED)
    assert changed.data == {"raw_key": "raw/fruit/pies.jsonl", "changed": 6}
    assert "raw/fruit/pies.jsonl" in admin.catalog.events.seen("raw/")

    # S3 delivers at least once; EventBridge may deliver the same put too: one invocation
    again = installed.invoke("ingest", payload("s3-put.json", bucket))
    via_eventbridge = installed.invoke("ingest", payload("eventbridge-s3.json", bucket))
    assert again["invocations"][0]["status"] == via_eventbridge["invocations"][0]["status"]
    assert again["invocations"][0]["status"] == "duplicate"
    [run] = admin.catalog.events.invocations(function="ingest")
    assert (run.id, run.status, run.attempts, run.error) == (
        f"{event_id}:ingest",
        "succeeded",
        1,
        None,
    )
    assert len(_events(admin, DOCUMENTS_CHANGED)) == 1


def test_an_sqs_batch_reports_only_the_message_that_failed(
    installed: Lambda, admin: Workspace, s3: S3, bucket: str
) -> None:
    client = s3.client()
    client.put_object(Bucket=bucket, Key="lake/raw/fruit/my pies+more.jsonl", Body=FRUIT)
    client.put_object(Bucket=bucket, Key="lake/raw/bad source!/x.jsonl", Body=FRUIT)
    batch = payload("sqs-s3-put.json", bucket)
    good = batch["Records"][0]
    body = good["body"]

    def message(message_id: str, body: str) -> dict[str, Any]:
        return {**good, "messageId": message_id, "body": body}

    sns = {"Type": "Notification", "TopicArn": "arn:aws:sns:us-east-1:1:t", "Message": body}
    test_event = {"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": bucket}
    batch["Records"] += [
        # "raw/bad source!/" is no valid source: an input error, dead at once, not retried
        message("bad", body.replace("raw/fruit/my+pies%2Bmore.jsonl", "raw/bad+source%21/x.jsonl")),
        message("sns", json.dumps(sns)),  # the same put again, through SNS: a duplicate
        message("test", json.dumps(test_event)),  # sent when the notification is configured
        message("outside", body.replace("lake/raw/", "elsewhere/raw/")),  # not in the lake
    ]
    out = installed.invoke("ingest", batch)
    assert out == {"batchItemFailures": []}  # SQS delivers none of them again
    assert admin.catalog.documents.count() == 6
    assert set(admin.catalog.events.seen("raw/")) == {
        "raw/fruit/my pies+more.jsonl",  # decoded: "+" is a space, "%2B" a plus
        "raw/bad source!/x.jsonl",
    }
    runs = {r.function + " " + r.status: r for r in admin.catalog.events.invocations()}
    assert set(runs) == {"ingest succeeded", "ingest dead"}
    assert runs["ingest dead"].attempts == 1
    assert "invalid source name 'bad source!'" in (runs["ingest dead"].error or "")


# -- schedules and chained events -----------------------------------------------------------------


def test_a_scheduled_event_runs_its_function_once_per_tick(
    installed: Lambda, env: dict[str, str], bucket: str, tmp_path: Path
) -> None:
    # a workspace folder that ships its own embedlake.toml (here: to register this module's
    # functions, which no EMBEDLAKE_* variable can, runtime.modules being a list)
    folder = Path(os.environ["EMBEDLAKE_WORKSPACE_DIR"])
    folder.mkdir(parents=True)
    toml = default_toml().replace("modules = []", 'modules = ["embedlake_test_jobs"]')
    (folder / "embedlake.toml").write_text(toml)
    with Workspace.init(tmp_path / "admin", environ=env) as admin:
        tick = payload("eventbridge-schedule.json", bucket)
        out = installed.invoke("nightly", tick)  # an entry point for a function of settings
        [done] = out["invocations"]
        assert done["result"] == {"due": "2026-03-02T03:00:00+00:00", "cron": "0 3 * * *"}
        assert installed.invoke("nightly", tick)["invocations"][0]["status"] == "duplicate"
        [event] = _events(admin, SCHEDULE)
        assert event.id == "schedule:nightly:2026-03-02T03:00:00+00:00"
        with pytest.raises(InputError, match="no schedule trigger"):
            installed.invoke("ingest", tick)
        with pytest.raises(ConfigError, match=r"no function 'no-such' .*nightly"):
            installed.invoke("no_such", tick)


def test_dispatch_routes_the_events_a_function_emitted(
    installed: Lambda, admin: Workspace, s3: S3, bucket: str
) -> None:
    s3.client().put_object(Bucket=bucket, Key="lake/raw/fruit/pies.jsonl", Body=FRUIT)
    installed.invoke("ingest", payload("s3-put.json", bucket))
    [changed] = _events(admin, DOCUMENTS_CHANGED)

    # no EMBEDLAKE_AWS_FUNCTION_* variables: each invocation runs inline, in the dispatcher
    out = installed.invoke("dispatch", payload("eventbridge-schedule.json", bucket))
    assert (out["invoked"], out["retried"]) == (2, 0)  # documents.changed: embed-new, retrain
    runs = {r.function: r for r in admin.catalog.events.invocations()}
    assert set(runs) == {"ingest", "embed-new", "retrain-on-growth"}  # ingest ran once only
    assert runs["retrain-on-growth"].id == f"{changed.id}:retrain-on-growth"
    assert runs["retrain-on-growth"].status == "succeeded"
    # embed-new is heavy: refused on Lambda without Ray, dead-lettered at once with the reason
    assert runs["embed-new"].status == "dead"
    assert 'runtime.engine = "ray"' in (runs["embed-new"].error or "")
    assert admin.catalog.events.get_state(CURSOR) == str(admin.catalog.events.latest_seq())

    again = installed.invoke("dispatch", {})
    assert (again["events"], again["invoked"], again["retried"]) == (0, 0, 0)
    # what dispatch sends a function's own Lambda, delivered there: the same invocation
    sent = installed.invoke("retrain_on_growth", invoke_payload(changed))
    assert sent["invocations"][0]["status"] == "duplicate"
    [dead] = installed.invoke("embed_new", invoke_payload(changed))["invocations"]
    assert dead["status"] == "dead" and "no GPU, 15 minutes" in dead["error"]  # not raised


# -- the HTTP API ----------------------------------------------------------------------------------


def test_the_light_image_leaves_the_training_stack_out(artifact: Artifact) -> None:
    manifest = artifact.manifest
    light = {n for n, f in manifest["functions"].items() if f["package"] == "light"}
    # with serving.torch_free the API is light too; what loads a model with torch is not
    assert {"ingest", "dispatch", "api", "nightly"} <= light
    assert light.isdisjoint({"register-model", "retrain-on-growth", "embed-new", "build-release"})
    assert manifest["light"]["functions"] == sorted(light)
    installs = closure(manifest["light"]["requirements"])
    assert {"onnxruntime", "tokenizers", "model2vec", "faiss-cpu", "fastapi", "mangum"} <= installs
    assert {"torch", "transformers", "sentence-transformers", "onnx"} & installs == set()
    assert {"torch", "transformers", "sentence_transformers"} <= artifact.light_blocked
    dockerfile = (artifact.light_root.parent / "Dockerfile").read_text()
    assert "torch==" not in dockerfile and '"-m", "awslambdaric"' in dockerfile


def test_the_api_answers_searches_from_api_gateway_and_function_urls(
    installed: Lambda, admin: Workspace, bucket: str, tmp_path: Path
) -> None:
    dishes = ["pie", "tart", "jam", "crumble", "sorbet", "salad"]
    fruits = ["apple", "banana", "cherry", "plum", "pear", "quince"]
    rows = [{"_id": f"{f}-{d}", "text": f"{f} {d} with {f}"} for f in fruits for d in dishes]
    ingest_path(admin, write_jsonl(tmp_path / "dishes.jsonl", rows), source="dishes")
    prefix, _ = train(admin, name="lsa-aws", kind="lsa", components=8)
    _build_now(admin, prefix)
    key, _ = admin.catalog.keys.create(["search"], "lambda test")

    for name in ("apigw-v2-http.json", "function-url.json"):
        request = payload(name, bucket)
        request["headers"]["authorization"] = f"Bearer {key}"
        response = installed.invoke("api", request)
        assert response["statusCode"] == 200, response
        found = json.loads(response["body"])
        assert found["alias"] == "production" and len(found["results"]) == 3
        assert "cherry-pie" in [hit["id"] for hit in found["results"]]
    state = installed.api_state()
    unauthenticated = installed.invoke("api", payload("function-url.json", bucket))
    assert unauthenticated["statusCode"] == 401
    assert state is not None and installed.api_state() == state  # loaded once per container


# -- the workspace from the environment -----------------------------------------------------------


def test_a_handler_never_migrates_and_needs_a_shared_catalog(
    installed: Lambda, env: dict[str, str], bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigError, match="embedlake migrate"):  # the database is empty
        installed.invoke("ingest", payload("s3-put.json", bucket))
    monkeypatch.setenv("EMBEDLAKE_CATALOG__URL", "sqlite:///catalog.db")
    with pytest.raises(ConfigError, match="every function shares"):
        installed.invoke("ingest", payload("s3-put.json", bucket))


# -- payload shapes, without servers --------------------------------------------------------------

LAKE = LakeLocation.parse(f"s3://{FIXTURE_BUCKET}/lake")


def _fixture(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return loaded


def test_recorded_payloads_parse_into_lake_keys_ticks_and_events() -> None:
    assert messages(_fixture("s3-put.json"), LAKE) == [
        ObjectNotice(OBJECT_CREATED, "raw/fruit/pies.jsonl")
    ]
    assert messages(_fixture("eventbridge-s3.json"), LAKE) == [
        ObjectNotice(OBJECT_CREATED, "raw/fruit/pies.jsonl")
    ]
    batch, parts = units(_fixture("sqs-s3-put.json"))
    assert batch and [p[0] for p in parts] == ["059f36b4-87a3-44ab-83d2-661975830a7d"]
    assert messages(parts[0][1], LAKE) == [
        ObjectNotice(OBJECT_CREATED, "raw/fruit/my pies+more.jsonl")
    ]
    [tick] = messages(_fixture("eventbridge-schedule.json"), LAKE)
    assert isinstance(tick, Tick) and tick.time.isoformat() == "2026-03-02T03:00:00+00:00"
    assert units(_fixture("s3-put.json"))[0] is False
    event = Event(DOCUMENTS_CHANGED, "fruit", {"changed": 6})
    assert messages(invoke_payload(event), LAKE) == [event]
    assert messages(json.dumps(event.to_json()), LAKE) == [event]  # an SQS body


def test_payloads_that_are_not_ours_are_dropped_or_refused() -> None:
    other = LakeLocation.parse("s3://another-bucket/lake")
    assert messages(_fixture("s3-put.json"), other) == []
    assert messages(_fixture("s3-put.json"), LakeLocation.parse(f"s3://{FIXTURE_BUCKET}/x")) == []
    assert messages({"Event": "s3:TestEvent", "Bucket": FIXTURE_BUCKET}, LAKE) == []
    sns_lambda = {"Records": [{"EventSource": "aws:sns", "Sns": {"Message": json.dumps(
        _fixture("s3-put.json"))}}]}  # fmt: skip
    assert messages(sns_lambda, LAKE) == [ObjectNotice(OBJECT_CREATED, "raw/fruit/pies.jsonl")]
    with pytest.raises(InputError, match="not an AWS event embedlake knows"):
        messages({"hello": "world"}, LAKE)
    with pytest.raises(InputError, match="not an AWS event embedlake knows"):
        messages("not json", LAKE)
    with pytest.raises(ConfigError, match="s3:// URL"):
        LakeLocation.parse("/data/lake")


# -- heavy functions as Batch jobs, and the database secret -----------------------------------------


def _aws_environ(monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
    """``values`` and moto's credentials, in the environment the Lambda containers start with."""
    test_credentials = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    for key, value in {**test_credentials, **values}.items():
        monkeypatch.setenv(key, value)


@pytest.fixture
def aws() -> Iterator[S3]:
    """AWS Batch and Lambda (moto's, in a process of its own: they try to start containers)."""
    server = start_moto_process()
    yield server
    server.stop()


def test_a_heavy_function_runs_as_a_batch_job_that_dispatch_submits(
    installed: Lambda,
    aws: S3,
    artifact: Artifact,
    admin: Workspace,
    s3: S3,
    bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """dispatch → SubmitJob (moto's Batch records it; it cannot start containers) → the job's
    command, as Batch would run it, through the image's entrypoint.sh → the invocation is recorded
    and the job pokes dispatch (moto's Lambda accepts the asynchronous invoke)."""
    iam, ec2, batch = aws.client("iam"), aws.client("ec2"), aws.client("batch")
    role = iam.create_role(RoleName=f"r{uuid4().hex[:8]}", AssumeRolePolicyDocument="{}")["Role"]
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.0.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="heavy", Description="jobs", VpcId=vpc)["GroupId"]
    name = f"heavy-{uuid4().hex[:8]}"
    compute = batch.create_compute_environment(
        computeEnvironmentName=name,
        state="ENABLED",
        type="MANAGED",
        computeResources={
            "type": "FARGATE",
            "maxvCpus": 4,
            "subnets": [subnet],
            "securityGroupIds": [group],
        },
        serviceRole=role["Arn"],  # moto wants one; AWS uses its service-linked role
    )
    queue = batch.create_job_queue(
        jobQueueName=name,
        state="ENABLED",
        priority=1,
        computeEnvironmentOrder=[
            {"order": 1, "computeEnvironment": compute["computeEnvironmentArn"]}
        ],
    )
    definition = batch.register_job_definition(  # as the template's HeavyJobDefinition
        jobDefinitionName=name,
        type="container",
        platformCapabilities=["FARGATE"],
        containerProperties={
            "image": "embedlake-functions",
            "command": ["job", "Ref::function", "Ref::event"],
            "resourceRequirements": [
                {"type": "VCPU", "value": "4"},
                {"type": "MEMORY", "value": "16384"},
            ],
            "executionRoleArn": role["Arn"],
        },
    )
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as z:
        z.writestr("noop.py", "def handler(event, context):\n    return event\n")
    aws.client("lambda").create_function(
        FunctionName=f"{name}-dispatch",
        Runtime="python3.11",
        Role=role["Arn"],
        Handler="noop.handler",
        Code={"ZipFile": code.getvalue()},
    )
    _aws_environ(
        monkeypatch,
        EMBEDLAKE_AWS_BATCH_JOB_QUEUE=queue["jobQueueArn"],
        EMBEDLAKE_AWS_BATCH_JOB_DEFINITION=definition["jobDefinitionArn"],
        AWS_ENDPOINT_URL_BATCH=aws.endpoint,
        AWS_ENDPOINT_URL_LAMBDA=aws.endpoint,
    )

    s3.client().put_object(Bucket=bucket, Key="lake/raw/fruit/pies.jsonl", Body=FRUIT)
    installed.invoke("ingest", payload("s3-put.json", bucket))
    [changed] = _events(admin, DOCUMENTS_CHANGED)
    out = installed.invoke("dispatch", {})
    assert out["invoked"] == 2  # embed-new: submitted; retrain-on-growth: inline
    run_id = f"{changed.id}:embed-new"
    assert admin.catalog.events.invocation(run_id).status == "queued"  # the job has not run

    [summary] = (
        batch.list_jobs(jobQueue=queue["jobQueueArn"], jobStatus="FAILED")["jobSummaryList"]
        or batch.list_jobs(jobQueue=queue["jobQueueArn"])["jobSummaryList"]
    )
    [job] = batch.describe_jobs(jobs=[summary["jobId"]])["jobs"]
    assert job["parameters"] == {"function": "embed-new", "event": changed.id}
    params = job["parameters"]  # Batch puts them in for the command's Ref:: placeholders
    command = [params[c[5:]] if c.startswith("Ref::") else c for c in job["container"]["command"]]
    environ = {
        **os.environ,
        "EMBEDLAKE_AWS_FUNCTION_DISPATCH": f"{name}-dispatch",
        "PYTHONPATH": str(artifact.image_root),
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    done = subprocess.run(
        ["sh", str(artifact.image_root.parent / "entrypoint.sh"), *command],
        cwd=artifact.image_root,
        env=environ,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert "embed-new for" in done.stderr and "succeeded" in done.stderr
    run = admin.catalog.events.invocation(run_id)
    assert (run.status, run.attempts, run.error) == ("succeeded", 1, None)
    [model] = admin.catalog.registry.list_models()  # the configured LSA, fitted by the job
    assert admin.catalog.registry.count_embedded(model.id) == 6  # every document embedded
    # Batch runs a job again after a lost container: the recorded invocation makes it a no-op
    again = subprocess.run(
        ["sh", str(artifact.image_root.parent / "entrypoint.sh"), *command],
        cwd=artifact.image_root,
        env=environ,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert again.returncode == 0 and "duplicate" in again.stderr


def test_the_database_password_comes_from_secrets_manager_at_cold_start(
    installed: Lambda,
    env: dict[str, str],
    postgres: Any,
    s3: S3,
    bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    password = uuid4().hex
    url = postgres.role(f"lambda_{uuid4().hex[:8]}", password, env["EMBEDLAKE_CATALOG__URL"])
    as_role = {**env, "EMBEDLAKE_CATALOG__URL": url, "EMBEDLAKE_CATALOG__PASSWORD": password}
    with Workspace.init(tmp_path / "admin", environ=as_role) as admin:
        secrets = s3.client("secretsmanager")
        arn = secrets.create_secret(
            Name=f"rds-{uuid4().hex[:8]}",
            SecretString=json.dumps({"username": make_url(url).username, "password": password}),
        )["ARN"]
        _aws_environ(
            monkeypatch,
            EMBEDLAKE_CATALOG__URL=url,
            EMBEDLAKE_RUNTIME__SYSTEM_DATABASE=url,
            EMBEDLAKE_AWS_DB_SECRET_ARN=arn,
            AWS_ENDPOINT_URL=s3.endpoint,
        )
        s3.client().put_object(Bucket=bucket, Key="lake/raw/fruit/pies.jsonl", Body=FRUIT)
        out = installed.invoke("ingest", payload("s3-put.json", bucket))
        assert out["invocations"][0]["status"] == "succeeded"
        assert admin.catalog.documents.count() == 6

        secrets.put_secret_value(SecretId=arn, SecretString=json.dumps({"password": "wrong"}))
        installed.close()  # a new container reads the secret again
        with pytest.raises(errors.CatalogError, match="password authentication failed") as no:
            installed.invoke("ingest", payload("s3-put.json", bucket))
        assert "wrong" not in str(no.value)  # the password is never in the error
        monkeypatch.setenv("EMBEDLAKE_AWS_DB_SECRET_ARN", arn + "-gone")
        with pytest.raises(ConfigError, match="EMBEDLAKE_AWS_DB_SECRET_ARN: cannot read"):
            installed.invoke("ingest", payload("s3-put.json", bucket))
