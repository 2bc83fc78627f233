"""CloudFormation building blocks: names, intrinsic functions, IAM statements, EventBridge cron,
and the workspace's settings as the functions' environment."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from embedlake.config import Settings
from embedlake.errors import ConfigError

# Settings the template sets itself (lake, catalog, runtime queue) or that are secrets: never copied.
OWN_SETTINGS = ("lake.", "catalog.", "runtime.system_database", "runtime.watch", "runtime.executor")


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


def dump_yaml(body: Mapping[str, Any]) -> str:
    """The template as YAML (long-form intrinsics, which every CloudFormation tool reads)."""
    import yaml  # PyYAML, installed with dbos (a core dependency)

    text: str = yaml.safe_dump(dict(body), sort_keys=False, width=100)
    return text


def sub(text: str, **names: Any) -> dict[str, Any]:
    return {"Fn::Sub": [text, names] if names else text}


def ref(name: str) -> dict[str, str]:
    return {"Ref": name}


def att(name: str, attribute: str) -> dict[str, str]:
    return {"Fn::GetAtt": f"{name}.{attribute}"}


def allow(actions: list[str], resources: list[Any], **condition: Any) -> dict[str, Any]:
    statement = {"Effect": "Allow", "Action": actions, "Resource": resources}
    return statement | ({"Condition": condition} if condition else {})
