"""The AWS SAM template and the Lambda artifacts: derived from the function registry, and valid
CloudFormation by cfn-lint's rules (no AWS account needed: the checks are static)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path
from typing import Any

import pytest

from embedlake.aws import HEAVY
from embedlake.aws import package as packaging
from embedlake.aws.cfn import aws_cron, dump_yaml, function_env_var, logical_id
from embedlake.aws.template import LAMBDA_MAX_TIMEOUT, TemplateOptions, build_template
from embedlake.config import Settings, default_toml
from embedlake.errors import ConfigError
from embedlake.events import Event
from embedlake.functions import Functions, object_created, on_event, schedule
from tests.conftest import ROOT

BUILTIN = {"ingest", "embed-new", "register-model", "build-release", "retrain-on-growth"}


def lint(body: dict[str, Any], tmp_path: Path) -> list[str]:
    """cfn-lint's findings on the template (every level: errors, warnings, informational)."""
    from cfnlint.api import lint_file

    path = tmp_path / "template.yaml"
    path.write_text(dump_yaml(body), encoding="utf-8")
    return [str(m) for m in lint_file(path)]


def functions_of(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        r["Metadata"]["embedlake"]["function"]: r
        for r in body["Resources"].values()
        if r["Type"] == "AWS::Serverless::Function"
    }


def statements(body: dict[str, Any], function: str) -> list[dict[str, Any]]:
    role = body["Resources"][f"{logical_id(function)}Role"]["Properties"]
    return [s for p in role["Policies"] for s in p["PolicyDocument"]["Statement"]]


def registry(settings: Settings) -> Functions:
    return packaging.registry(settings)


def custom_functions() -> Functions:
    extra = Functions()

    @extra.function(
        on=schedule("30 2 * * 1-5"), name="nightly-report", concurrency=3, timeout="20m", retries=1
    )
    def nightly_report(event: Event, ctx: object) -> None: ...

    @extra.function(on=[object_created("inbox/**/*.csv"), on_event("report.wanted")], timeout=60)
    def csv_drop(event: Event, ctx: object) -> None: ...

    return extra


# -- the default workspace --------------------------------------------------------------------
def test_default_template_passes_cfn_lint(tmp_path: Path) -> None:
    built = build_template(Settings(), registry(Settings()))
    assert lint(built.body, tmp_path) == []


def test_one_function_per_registered_function_with_the_specs_limits() -> None:
    specs = {s.name: s for s in registry(Settings())}
    built = build_template(Settings(), registry(Settings()))
    deployed = functions_of(built.body)
    # the heavy ones are Batch jobs (below); every other one is a Lambda function
    assert set(deployed) == set(specs) - HEAVY | {"dispatch", "api"}
    assert set(specs) == BUILTIN and sorted(built.jobs) == sorted(HEAVY)
    for name, spec in specs.items():
        if name in HEAVY:
            continue
        props = deployed[name]["Properties"]
        assert props["ReservedConcurrentExecutions"] == spec.concurrency
        assert props["Timeout"] == min(spec.timeout, LAMBDA_MAX_TIMEOUT)
        assert deployed[name]["Metadata"]["embedlake"]["delegated"] == (spec.timeout > 900)
        entry = f"embedlake.aws.handlers.{name.replace('-', '_')}"
        assert props["PackageType"] == "Image" and props["ImageConfig"]["Command"] == [entry]
    # every built-in runs longer than Lambda's 15 minutes: all flagged as delegated
    assert sorted(build_template(Settings(), registry(Settings())).delegated) == sorted(BUILTIN)
    # the light image (no torch) for what loads no model, the full image for what does
    assert deployed["ingest"]["Properties"]["ImageUri"] == {"Ref": "LightImageUri"}
    assert deployed["register-model"]["Properties"]["ImageUri"] == {"Ref": "ImageUri"}
    assert deployed["api"]["Properties"]["ImageUri"] == {"Ref": "ImageUri"}
    # without Batch jobs, the heavy functions are Lambda functions too (for Ray, or to be refused)
    lambdas = functions_of(
        build_template(Settings(), registry(Settings()), TemplateOptions(heavy_jobs=False)).body
    )
    assert set(lambdas) == set(specs) | {"dispatch", "api"}
    assert lambdas["embed-new"]["Properties"]["PackageType"] == "Image"
    ray = Settings(runtime={"engine": "ray", "ray_address": "ray://head:10001"})
    assert build_template(ray, registry(ray)).jobs == []


def test_heavy_functions_run_as_batch_jobs_that_dispatch_submits(tmp_path: Path) -> None:
    body = build_template(Settings(), registry(Settings())).body
    res = body["Resources"]
    job = res["HeavyJobDefinition"]["Properties"]
    container = job["ContainerProperties"]
    assert job["PlatformCapabilities"] == ["FARGATE"]
    assert container["Image"] == {"Ref": "ImageUri"}
    assert container["Command"] == ["job", "Ref::function", "Ref::event"]  # entrypoint.sh
    variables = {v["Name"]: v["Value"] for v in container["Environment"]}
    lambda_env = body["Globals"]["Function"]["Environment"]["Variables"]
    assert {k: v for k, v in variables.items() if k in lambda_env} == {
        k: v for k, v in lambda_env.items() if k in variables
    }  # the functions' settings, catalog and lake
    assert variables["EMBEDLAKE_AWS_FUNCTION_DISPATCH"] == {"Fn::Sub": "${AWS::StackName}-dispatch"}
    assert res["HeavyJobQueue"]["Properties"]["ComputeEnvironmentOrder"][0][
        "ComputeEnvironment"
    ] == {"Ref": "HeavyComputeEnvironment"}
    dispatch = functions_of(body)["dispatch"]["Properties"]
    env = dispatch["Environment"]["Variables"]
    assert env["EMBEDLAKE_AWS_BATCH_JOB_QUEUE"] == {"Ref": "HeavyJobQueue"}
    assert env["EMBEDLAKE_AWS_BATCH_JOB_DEFINITION"] == {"Ref": "HeavyJobDefinition"}
    submit = next(s for s in statements(body, "dispatch") if s["Action"] == ["batch:SubmitJob"])
    assert submit["Resource"] == [{"Ref": "HeavyJobQueue"}, {"Ref": "HeavyJobDefinition"}]
    # the job's role: what embed-new and build-release touch in the lake, and poking dispatch
    policy = res["HeavyJobRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    writes = next(s for s in policy if "s3:PutObject" in s["Action"])
    assert "raw/" not in json.dumps(writes) and "embeddings/" in json.dumps(writes)
    assert any(s["Action"] == ["lambda:InvokeFunction"] for s in policy)


def test_object_triggers_arrive_through_a_queue_redriven_to_a_dead_letter_queue() -> None:
    body = build_template(Settings(), registry(Settings())).body
    res = body["Resources"]
    queue = res["IngestQueue"]["Properties"]
    assert queue["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": "IngestDeadLetterQueue.Arn"},
        "maxReceiveCount": 3 + 1,  # ingest: retries=3
    }
    assert res["RegisterModelQueue"]["Properties"]["RedrivePolicy"]["maxReceiveCount"] == 3
    source = functions_of(body)["ingest"]["Properties"]["Events"]["Objects"]["Properties"]
    assert source["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    notified = res["LakeBucket"]["Properties"]["NotificationConfiguration"]["QueueConfigurations"]
    filters = {
        n["Queue"]["Fn::GetAtt"]: [r["Value"] for r in n["Filter"]["S3Key"]["Rules"]]
        for n in notified
    }
    assert filters == {
        "IngestQueue.Arn": ["raw/"],
        "RegisterModelQueue.Arn": ["models/", "/manifest.json"],
    }
    # the functions dispatch invokes get a dead-letter queue for their asynchronous calls
    retrain = functions_of(body)["retrain-on-growth"]["Properties"]
    assert retrain["DeadLetterQueue"]["TargetArn"] == {
        "Fn::GetAtt": "RetrainOnGrowthDeadLetterQueue.Arn"
    }


def test_iam_is_scoped_to_the_lake_prefix_and_to_what_each_function_needs() -> None:
    settings = Settings(lake={"url": "s3://acme-lake/prod"})
    body = build_template(settings, registry(settings)).body
    ingest = statements(body, "ingest")
    reads = next(s for s in ingest if s["Action"] == ["s3:GetObject"])
    keys = [r["Fn::Sub"][0] for r in reads["Resource"]]
    assert keys == [
        f"arn:${{AWS::Partition}}:s3:::${{Bucket}}/prod/{p}*" for p in ("raw/", "curated/")
    ]
    writes = next(s for s in ingest if "s3:PutObject" in s["Action"])
    assert "raw/" not in json.dumps(writes)  # ingest never rewrites the audit trail
    [poke] = [s for s in ingest if "lambda:InvokeFunction" in s["Action"]]  # dispatch only
    assert poke["Resource"][0]["Fn::Sub"][1] == {"Name": {"Fn::Sub": "${AWS::StackName}-dispatch"}}
    secret = next(s for s in ingest if s["Action"] == ["secretsmanager:GetSecretValue"])
    assert secret["Resource"] == [{"Fn::GetAtt": "DatabaseCluster.MasterUserSecret.SecretArn"}]
    # dispatch may invoke only the functions triggered by domain events, and reads no object
    dispatch = statements(body, "dispatch")
    invoke = next(s for s in dispatch if s["Action"] == ["lambda:InvokeFunction"])
    targets = {r["Fn::GetAtt"] for r in invoke["Resource"]}
    assert targets == {"RetrainOnGrowthFunction.Arn"}  # embed-new, build-release: Batch jobs
    assert not any(a.startswith("s3:") for s in dispatch for a in s["Action"])
    env = functions_of(body)["dispatch"]["Properties"]["Environment"]["Variables"]
    assert env[function_env_var("retrain-on-growth")] == {"Ref": "RetrainOnGrowthFunction"}
    assert "EMBEDLAKE_AWS_FUNCTION_EMBED_NEW" not in env


# -- a customised workspace ---------------------------------------------------------------------
def test_customised_template_passes_cfn_lint(tmp_path: Path) -> None:
    settings = Settings(
        lake={"url": "s3://acme-lake/prod"},
        training={"kind": "lsa", "schedule": "0 3 * * 0"},
        index={"engine": "pgvector"},
        serving={"torch_free": True},
    )
    functions = registry(settings).merge(custom_functions())
    options = TemplateOptions(
        existing_bucket="acme-lake",
        api_auth="none",
        create_database=False,
        memory={"ingest": 3008},
    )
    built = build_template(settings, functions, options)
    assert lint(built.body, tmp_path) == []
    body = built.body
    res = body["Resources"]
    assert "LakeBucket" not in res and "DatabaseCluster" not in res
    rule = res["IngestRule0"]["Properties"]["EventPattern"]
    assert rule["detail-type"] == ["Object Created"]
    assert rule["detail"] == {
        "bucket": {"name": [{"Ref": "LakeBucketName"}]},
        "object": {"key": [{"prefix": "prod/raw/"}]},
    }
    allowed = res["IngestQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"][0]
    assert allowed["Principal"] == {"Service": "events.amazonaws.com"}
    assert allowed["Condition"]["ArnEquals"]["aws:SourceArn"] == [{"Fn::GetAtt": "IngestRule0.Arn"}]
    deployed = functions_of(body)
    assert deployed["api"]["Properties"]["FunctionUrlConfig"] == {"AuthType": "NONE"}
    # serving.torch_free: the API runs from the light image (no torch) too
    assert deployed["api"]["Properties"]["ImageUri"] == {"Ref": "LightImageUri"}
    assert deployed["api"]["Properties"]["EphemeralStorage"] == {"Size": 4096}  # its index files
    assert deployed["register-model"]["Properties"]["ImageUri"] == {"Ref": "ImageUri"}
    assert deployed["ingest"]["Properties"]["MemorySize"] == 3008
    # schedules in EventBridge's six-field cron; the scheduled retraining comes from settings
    nightly = deployed["nightly-report"]["Properties"]
    expected = "cron(30 2 ? * MON,TUE,WED,THU,FRI *)"  # ranges written as day names
    assert nightly["Events"]["Schedule0"]["Properties"]["Schedule"] == expected
    assert nightly["ReservedConcurrentExecutions"] == 3 and nightly["Timeout"] == 900
    retrain = deployed["retrain-scheduled"]["Properties"]["Events"]["Schedule0"]["Properties"]
    assert retrain["Schedule"] == "cron(0 3 ? * SUN *)"
    # an existing database: its secret, host parameter; settings reach the functions
    env = body["Globals"]["Function"]["Environment"]["Variables"]
    assert env["EMBEDLAKE_AWS_DB_SECRET_ARN"] == {"Ref": "DatabaseSecretArn"}
    assert env["EMBEDLAKE_INDEX__ENGINE"] == "pgvector"
    assert env["EMBEDLAKE_TRAINING__SCHEDULE"] == "0 3 * * 0"
    assert not any(k.startswith(("EMBEDLAKE_LAKE__SECRET", "EMBEDLAKE_API__KEY")) for k in env)
    # a function with an object and a domain trigger: its own queue, and dispatch may invoke it
    assert "CsvDropQueue" in res
    assert res["CsvDropRule0"]["Properties"]["EventPattern"]["detail"]["object"] == {
        "key": [{"prefix": "prod/inbox/"}]
    }
    dispatch_env = deployed["dispatch"]["Properties"]["Environment"]["Variables"]
    assert "EMBEDLAKE_AWS_FUNCTION_CSV_DROP" in dispatch_env
    assert "EMBEDLAKE_AWS_FUNCTION_NIGHTLY_REPORT" not in dispatch_env  # EventBridge calls it


def test_runtime_modules_add_their_functions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "teamfns.py").write_text(
        "from embedlake.functions import Functions, schedule\n"
        "functions = Functions()\n"
        "@functions.function(on=schedule('*/15 * * * *'), timeout='5m')\n"
        "def tidy(event, ctx): ...\n",
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    settings = Settings(runtime={"modules": ["teamfns"]})
    built = build_template(settings, registry(settings))
    tidy = functions_of(built.body)["tidy"]["Properties"]
    assert tidy["Events"]["Schedule0"]["Properties"]["Schedule"] == "cron(0/15 * * * ? *)"
    assert tidy["Timeout"] == 300 and "tidy" not in built.delegated
    assert lint(built.body, tmp_path) == []


def test_overlapping_s3_notifications_are_refused_with_the_way_out() -> None:
    extra = Functions()

    @extra.function(on=object_created("raw/**/*.jsonl"))
    def jsonl_only(event: Event, ctx: object) -> None: ...

    functions = registry(Settings()).merge(extra)
    with pytest.raises(ConfigError, match="EventBridge"):
        build_template(Settings(), functions)
    built = build_template(Settings(), functions, TemplateOptions(notifications="eventbridge"))
    config = built.body["Resources"]["LakeBucket"]["Properties"]["NotificationConfiguration"]
    assert config == {"EventBridgeConfiguration": {"EventBridgeEnabled": True}}


@pytest.mark.parametrize(
    ("cron", "aws"),
    [
        ("0 3 * * 0", "cron(0 3 ? * SUN *)"),
        ("0 3 * * 7", "cron(0 3 ? * SUN *)"),
        ("*/5 * * * *", "cron(0/5 * * * ? *)"),
        ("0 0 1 * *", "cron(0 0 1 * ? *)"),
        ("@daily", "cron(0 0 * * ? *)"),
    ],
)
def test_cron_becomes_eventbridge_syntax(cron: str, aws: str) -> None:
    assert aws_cron(cron) == aws


def test_cron_that_eventbridge_cannot_express_is_refused() -> None:
    with pytest.raises(ConfigError, match="both day fields"):
        aws_cron("0 0 1 * 1")


def test_pinned_extras_match_pyproject() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    for name, pinned in packaging.EXTRAS.items():
        assert pinned == extras[name]


# -- the artifacts, through the CLI ------------------------------------------------------------
def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "embedlake.cli.app", *args],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=300,
    )


def test_aws_package_writes_the_listed_artifacts(tmp_path: Path) -> None:
    ws, out = tmp_path / "ws", tmp_path / "build"
    assert run_cli("init", str(ws)).returncode == 0
    proc = run_cli("aws", "package", str(ws), "--out", str(out), "--no-create-database")
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert (out / manifest["template"]).is_file()
    for item in manifest["light"]["contains"]:
        assert (out / "light" / item).exists(), item
    for item in manifest["image"]["contains"]:
        assert (out / "image" / item).exists(), item
    entrypoint = (out / "image/entrypoint.sh").read_text()
    assert "python -m embedlake.aws.job" in entrypoint and "python -m awslambdaric" in entrypoint
    assert (out / "light/app/embedlake/functions/builtin.py").is_file()
    assert not list((out / "light").rglob("__pycache__"))
    light = (out / "light/requirements.txt").read_text()
    assert "torch" not in light and "sentence-transformers" not in light and "psycopg" in light
    assert '"-m", "awslambdaric"' in (out / "light/Dockerfile").read_text()
    dockerfile = (out / "image/Dockerfile").read_text()
    assert dockerfile.startswith("#") and "FROM python:3.11-slim-bookworm" in dockerfile
    assert 'ENTRYPOINT ["/bin/sh", "/entrypoint.sh"]' in dockerfile
    assert "download.pytorch.org/whl/cpu" in dockerfile and '"torch==' in dockerfile
    image_requirements = (out / "image/requirements.txt").read_text()
    assert "mangum" in image_requirements and "awslambdaric" in image_requirements
    assert {n: f["package"] for n, f in manifest["functions"].items()} == {
        "ingest": "light",
        "dispatch": "light",
        "embed-new": "image",
        "register-model": "image",
        "build-release": "image",
        "retrain-on-growth": "image",
        "api": "image",
    }
    template = (out / "template.yaml").read_text()
    assert "LightImageUri" in template and "CodeUri" not in template
    from cfnlint.api import lint_file

    assert [str(m) for m in lint_file(out / "template.yaml")] == []
    # the same template on stdout, for review
    printed = run_cli("aws", "template", str(ws), "--no-create-database")
    assert printed.returncode == 0 and printed.stdout == template
    assert "Lambda stops it at 15 minutes" in printed.stderr


def test_aws_package_refuses_a_folder_with_files(tmp_path: Path) -> None:
    (tmp_path / "build").mkdir()
    (tmp_path / "build" / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty"):
        packaging.package(Settings(), tmp_path / "build")
    assert (tmp_path / "build" / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize(
    ("forms", "openvino"), [(None, True), ('["onnx-fp32", "onnx-int8"]', False)]
)
def test_the_images_carry_openvino_only_where_a_form_may_need_it(
    tmp_path: Path, forms: str | None, openvino: bool
) -> None:
    """Both images install the openvino extra (about 180 MB) when serving.forms names an
    openvino form, as the default does, so a release in that form is servable; not otherwise."""
    (tmp_path / "embedlake.toml").write_text(default_toml())
    environ = {"EMBEDLAKE_SERVING__TORCH_FREE": "true"}
    if forms is not None:
        environ["EMBEDLAKE_SERVING__FORMS"] = forms
    packaging.package(Settings.load(tmp_path, environ), tmp_path / "build")
    for image in ("light", "image"):
        lines = (tmp_path / "build" / image / "requirements.txt").read_text().splitlines()
        assert any(line.startswith("openvino") for line in lines) == openvino, (image, lines)


@pytest.mark.parametrize(
    "item", ["ingest", "ingest=big", "ingest=²", "ingest=-5", "a=" + "9" * 5000]
)
def test_a_memory_size_that_is_no_number_is_refused(item: str) -> None:
    from embedlake.cli.aws import _options

    with pytest.raises(ConfigError, match="use NAME=MB"):
        _options("", "s3", "iam", False, [item], False, False)


def test_the_images_let_umap_import_on_a_read_only_file_system() -> None:
    """Lambda mounts all but /tmp read-only, its user's home too: numba then has no folder for
    umap-learn's ``cache=True`` functions and ``import umap`` fails. The images' environment gives
    it one. Reproduced on a read-only bind mount of site-packages in a user and mount namespace of
    its own (``unshare -rm``: no root needed)."""
    for text in (packaging.dockerfile("2.13.0", "handler"), packaging.light_dockerfile()):
        assert packaging.NUMBA_CACHE in text.splitlines()
    name, _, value = packaging.NUMBA_CACHE.removeprefix("ENV ").partition("=")
    site = sysconfig.get_paths()["purelib"]
    mounted = f'mount --bind {site} {site} && mount -o remount,bind,ro {site} && exec "$@"'
    home = f"{site}/no-home"  # unwritable, as on Lambda
    plain = {k: v for k, v in os.environ.items() if k != name}
    plain |= {"HOME": home, "XDG_CACHE_HOME": home}

    def import_umap(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        argv = ["unshare", "-rm", "sh", "-c", mounted, "sh", sys.executable, "-c", "import umap"]
        return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)

    without = import_umap(plain)
    assert without.returncode != 0 and "no locator available" in without.stderr, without.stderr
    within = import_umap({**plain, name: value})
    assert within.returncode == 0, within.stderr
