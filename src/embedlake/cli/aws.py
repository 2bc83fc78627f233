"""``embedlake aws``: the AWS Lambda deployment of a workspace (docs/aws.md).

embedlake aws template ./ws > template.yaml     # review it, or deploy it with `sam deploy`
embedlake aws package ./ws --out build/          # template + light and full images + manifest
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from embedlake.cli.commands import Ws
from embedlake.cli.output import console, errors
from embedlake.errors import ConfigError

if TYPE_CHECKING:
    from embedlake.aws.template import TemplateOptions

app = typer.Typer(
    help="Deploy the functions and the API to AWS Lambda: SAM template and artifacts.",
    no_args_is_help=True,
)

ExistingBucket = Annotated[
    str,
    typer.Option(help="Use this existing bucket (EventBridge rules) instead of creating one."),
]
Notifications = Annotated[
    str, typer.Option(help="How a created bucket announces objects: s3 or eventbridge.")
]
ApiAuth = Annotated[str, typer.Option(help="Function URL auth of the API: iam or none.")]
CreateDatabase = Annotated[
    bool,
    typer.Option(help="Create Aurora PostgreSQL Serverless v2 (else: an existing database)."),
]
Memory = Annotated[list[str] | None, typer.Option(help="NAME=MB for one function (repeatable).")]
Api = Annotated[bool, typer.Option(help="Deploy the HTTP API (a Function URL).")]
HeavyJobs = Annotated[
    bool,
    typer.Option(help="Run embed-new and build-release as AWS Batch jobs (unless they use Ray)."),
]


def _options(
    existing_bucket: str,
    notifications: str,
    api_auth: str,
    create_database: bool,
    memory: list[str] | None,
    api: bool,
    heavy_jobs: bool,
) -> TemplateOptions:
    from embedlake.aws.template import TemplateOptions

    if notifications not in ("s3", "eventbridge"):
        raise ConfigError(f"--notifications must be s3 or eventbridge, not {notifications!r}")
    if api_auth not in ("iam", "none"):
        raise ConfigError(f"--api-auth must be iam or none, not {api_auth!r}")
    sizes: dict[str, int] = {}
    for item in memory or []:
        name, _, mb = item.partition("=")
        # isascii: "²" passes isdigit but not int(); a length: int() refuses 4,300 digits
        if not (mb.isascii() and mb.isdigit()) or len(mb) > 6:
            raise ConfigError(f"--memory {item!r}: use NAME=MB, e.g. ingest=2048")
        sizes[name] = int(mb)
    kind: Literal["s3", "eventbridge"] = "s3" if notifications == "s3" else "eventbridge"
    auth: Literal["iam", "none"] = "iam" if api_auth == "iam" else "none"
    return TemplateOptions(
        existing_bucket=existing_bucket,
        notifications=kind,
        api=api,
        api_auth=auth,
        create_database=create_database,
        memory=sizes,
        heavy_jobs=heavy_jobs,
    )


@app.command()
def template(
    ws: Ws,
    existing_bucket: ExistingBucket = "",
    notifications: Notifications = "s3",
    api_auth: ApiAuth = "iam",
    create_database: CreateDatabase = True,
    memory: Memory = None,
    api: Api = True,
    heavy_jobs: HeavyJobs = True,
) -> None:
    """Print the SAM template generated from the workspace's functions (YAML, to stdout)."""
    from embedlake.aws.cfn import dump_yaml
    from embedlake.aws.package import registry
    from embedlake.aws.template import build_template
    from embedlake.config import Settings

    options = _options(
        existing_bucket, notifications, api_auth, create_database, memory, api, heavy_jobs
    )
    settings = Settings.load(ws)
    built = build_template(settings, registry(settings), options)
    for warning in built.warnings:
        errors.print(f"warning: {warning}", markup=False)
    typer.echo(dump_yaml(built.body), nl=False)


@app.command()
def package(
    ws: Ws,
    out: Annotated[Path, typer.Option(help="A new folder for the artifacts.")],
    existing_bucket: ExistingBucket = "",
    notifications: Notifications = "s3",
    api_auth: ApiAuth = "iam",
    create_database: CreateDatabase = True,
    memory: Memory = None,
    api: Api = True,
    heavy_jobs: HeavyJobs = True,
) -> None:
    """Write template.yaml, light/ and image/ (the two images' definitions) and manifest.json."""
    from embedlake.aws import package as packaging
    from embedlake.config import Settings

    options = _options(
        existing_bucket, notifications, api_auth, create_database, memory, api, heavy_jobs
    )
    manifest = packaging.package(Settings.load(ws), out, options)
    for warning in manifest["warnings"]:
        errors.print(f"warning: {warning}", markup=False)
    parts = ", ".join(k for k in ("template", "light", "image") if k in manifest)
    console.print(f"packaged {len(manifest['functions'])} functions into {out} ({parts})")
    console.print(json.dumps({n: f["package"] for n, f in manifest["functions"].items()}))
