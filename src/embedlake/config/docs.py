"""The default ``embedlake.toml`` and docs/settings.md, both written from the settings' descriptions.

Each setting is described once, on its field in :mod:`embedlake.config.sections`; this module only
lays the descriptions out. The descriptions are Markdown: the page keeps it, the toml's comments get
plain text. Secrets are never written into the toml, only named with the variables that set them.
After changing a setting, run ``make docs``; tests/unit/test_settings_docs.py fails until then.
"""

from __future__ import annotations

import inspect
import json
import re
import textwrap
from typing import Any, get_args

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

from embedlake.config.settings import CONFIG_FILE, NOT_SETTINGS, Settings

REGENERATE = "make docs (python -m embedlake.config > docs/settings.md)"
_WIDTH = 100
_LINK = re.compile(r"\[([^\]]+)\]\(([^)]+)\)")

_TOML_HEAD = """\
# embedlake workspace settings: every setting, with its default and what it means.
# The environment overrides this file: EMBEDLAKE_<SECTION>__<KEY>
# (e.g. EMBEDLAKE_INDEX__EF_SEARCH=256), and EMBEDLAKE_<SECTION>__<KEY>_FILE=/path reads the value
# from a file (how secrets are set). Relative paths resolve against this file's folder.
# The same as a page: docs/settings.md.
"""

_MD_INTRO = f"""\
# Settings

<!-- Generated from the field descriptions in src/embedlake/config/sections.py: edit those, then
run {REGENERATE}. -->

Read once, at the entry point (the CLI, the API, the worker), from three places, highest first:

1. environment variables `EMBEDLAKE_<SECTION>__<KEY>` (e.g. `EMBEDLAKE_INDEX__EF_SEARCH=256`);
   `EMBEDLAKE_<SECTION>__<KEY>_FILE=/path` reads the value from a file (the Docker/Kubernetes secrets
   convention); a list is given as JSON (`EMBEDLAKE_RUNTIME__MODULES='["my_jobs"]'`);
2. `{CONFIG_FILE}` in the workspace (written by `embedlake init`, each setting with its description);
3. the defaults below.

Relative paths are resolved against the workspace folder. Unknown keys and invalid values are refused
with an error that names the key. Every `EMBEDLAKE_*` environment variable must name a setting, except
those of the AWS wiring and of the benchmarks' and the tests' data folders:
{", ".join(f"`{name}*`" for name in NOT_SETTINGS)}.
"""


def sections() -> list[tuple[str, type[BaseModel]]]:
    """The ``[section]`` models of :class:`Settings`, in the order both documents list them."""
    found = []
    for name, field in Settings.model_fields.items():
        model = field.annotation
        if isinstance(model, type) and issubclass(model, BaseModel):
            found.append((name, model))
    return found


def is_secret(field: FieldInfo) -> bool:
    """Whether a setting is a secret: set through the environment only, never written out."""
    return field.annotation is SecretStr or SecretStr in get_args(field.annotation)


def env_name(section: str, key: str) -> str:
    """The environment variable of one setting, e.g. ``EMBEDLAKE_INDEX__EF_SEARCH``."""
    return f"EMBEDLAKE_{section}__{key}".upper()


def default_toml() -> str:
    """The commented ``embedlake.toml`` that ``embedlake init`` writes: the defaults, explained."""
    defaults = Settings()
    parts = [_TOML_HEAD]
    for section, model in sections():
        values = getattr(defaults, section)
        head = [*_comment(_plain(_section_doc(model))), f"[{section}]"]
        fields = []
        for key, field in model.model_fields.items():
            text = _plain(field.description or "")
            if is_secret(field):  # named, with the variables that set it, but never a value
                fields.append(_comment(f"{key}: {text}; {_secret_note(section, key)}"))
            elif getattr(values, key) is None:  # toml has no null: unset unless written here
                fields.append([*_comment(text), f"# {key} = (unset)"])
            else:
                fields.append([*_comment(text), f"{key} = {_toml_value(getattr(values, key))}"])
        parts.append("\n".join(head) + "\n" + "\n\n".join("\n".join(f) for f in fields) + "\n")
    return "\n".join(parts)


def settings_markdown() -> str:
    """docs/settings.md: how settings are read, then one table per section."""
    defaults = Settings()
    parts = [_MD_INTRO]
    for section, model in sections():
        values = getattr(defaults, section)
        rows = [f"## `[{section}]`", "", _section_doc(model), ""]
        rows += ["| setting | default | meaning |", "| --- | --- | --- |"]
        for key, field in model.model_fields.items():
            meaning, default = field.description or "", "none"
            if is_secret(field):
                meaning += "; " + _secret_note(section, key, code="`")
            elif getattr(values, key) is None:
                default = "unset"
            else:
                default = f"`{_toml_value(getattr(values, key))}`"
            rows.append(f"| `{section}.{key}` | {default} | {_cell(meaning)} |")
        parts.append("\n".join(rows) + "\n")
    return "\n".join(parts)


def _secret_note(section: str, key: str, code: str = "") -> str:
    variable = env_name(section, key)
    return (
        f"a secret, never in {code}{CONFIG_FILE}{code} and never printed: set "
        f"{code}{variable}_FILE=/path{code} (or {code}{variable}{code})"
    )


def _plain(markdown: str) -> str:
    """Markdown as a toml comment: code marks dropped, links spelled out (relative to docs/)."""
    return _LINK.sub(lambda m: f"{m[1]} (docs/{m[2]})", markdown).replace("`", "")


def _section_doc(model: type[BaseModel]) -> str:
    return " ".join(inspect.cleandoc(model.__doc__ or "").split())


def _comment(text: str) -> list[str]:
    wrapped = textwrap.wrap(text, _WIDTH - 2, break_long_words=False, break_on_hyphens=False)
    return [f"# {line}" for line in wrapped]


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _toml_value(value: Any) -> str:
    """A default as toml writes it (and as a reader of the page would type it into the file)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # JSON's string escapes are toml's
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    raise TypeError(f"no toml form for a default of type {type(value).__name__}")
