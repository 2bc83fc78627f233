"""Settings are described once (on their fields), the docs are written from that, and each is used.

Three ways a setting goes stale, each caught here: a page that drifted from the descriptions, a
setting without a description, and a setting that nothing reads any more (or yet).
"""

from __future__ import annotations

import ast
import tomllib

import pytest

from embedlake.config import default_toml, settings_markdown
from embedlake.config.__main__ import main
from embedlake.config.docs import REGENERATE, env_name, is_secret, sections
from tests.conftest import ROOT

SOURCE = ROOT / "src" / "embedlake"
# Where the settings are defined and documented, not used. config/settings.py still counts: the
# Settings methods there (catalog_url, runtime_database_url, executor_id) are how callers read some.
NOT_READERS = {SOURCE / "config" / "sections.py", SOURCE / "config" / "docs.py"}
# (section, key) -> why it is read nowhere in src/embedlake (e.g. a library reads it from the
# environment). Empty: every setting is read by our own code.
EXEMPT: dict[tuple[str, str], str] = {}


def test_every_section_and_setting_is_described() -> None:
    for section, model in sections():
        assert (model.__doc__ or "").strip(), f"[{section}] needs a docstring"
        for key, field in model.model_fields.items():
            assert (field.description or "").strip(), f"{section}.{key} needs a description"


def test_the_settings_page_is_written_from_the_descriptions() -> None:
    page = (ROOT / "docs" / "settings.md").read_text(encoding="utf-8")
    assert page == settings_markdown(), f"docs/settings.md is stale: run {REGENERATE}"


def test_the_default_toml_names_each_secret_with_its_variables_but_no_value() -> None:
    text = default_toml()
    written = tomllib.loads(text)
    secrets = 0
    for section, model in sections():
        for key, field in model.model_fields.items():
            if is_secret(field):
                secrets += 1
                assert key not in written[section]
                assert f"# {key}: " in text and f"{env_name(section, key)}_FILE=" in text
    assert secrets == 3  # lake.secret_access_key, catalog.password, api.key_pepper


def test_python_m_embedlake_config_prints_the_page_or_the_toml(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main([]) == 0
    assert capsys.readouterr().out == settings_markdown()
    assert main(["--toml"]) == 0
    assert capsys.readouterr().out == default_toml()


def test_every_setting_is_read_somewhere() -> None:
    assert all(path.is_file() for path in NOT_READERS)  # the exclusions follow the files
    read: set[tuple[str, str]] = set()
    for path in sorted(SOURCE.rglob("*.py")):
        if path not in NOT_READERS:
            read |= _settings_read(ast.parse(path.read_text(encoding="utf-8")))
    unread = [
        f"{section}.{key}"
        for section, model in sections()
        for key in model.model_fields
        if (section, key) not in read and (section, key) not in EXEMPT
    ]
    assert unread == [], (
        f"settings read nowhere in src/embedlake (remove them, or use them): {unread}"
    )


def _settings_read(tree: ast.Module) -> set[tuple[str, str]]:
    """The (section, key) pairs a module reads: ``x.index.ef_search``, or ``.ef_search`` on a name
    bound to a section (``s = ws.settings.index``, ``self._api = settings.api``) or annotated with
    its class (``gate: GateSettings``). Per module, not per scope: a heuristic, but one that a
    setting no code mentions cannot pass."""
    of_class = {model.__name__: section for section, model in sections()}
    names = set(of_class.values())
    bound = _bound_to_sections(tree, names, of_class)
    read = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            owner = _name(node.value)
            if owner in names:
                read.add((owner, node.attr))
            if owner in bound:
                read.add((bound[owner], node.attr))
    return read


def _bound_to_sections(
    tree: ast.Module, names: set[str], of_class: dict[str, str]
) -> dict[str, str]:
    """Names (and attributes) a module binds to a section: name -> section."""
    bound: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign | ast.AnnAssign) and isinstance(node.value, ast.Attribute):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if node.value.attr in names:
                bound |= {name: node.value.attr for t in targets if (name := _name(t))}
        if isinstance(node, ast.AnnAssign | ast.arg):
            target = node.arg if isinstance(node, ast.arg) else _name(node.target)
            section = of_class.get(_name(node.annotation) or "")
            if target and section:
                bound[target] = section
    return bound


def _name(node: ast.expr | None) -> str | None:
    """``x`` of ``x``, ``a.x`` or the annotation ``"x"``."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def test_the_scan_finds_reads_through_chains_bindings_and_annotations() -> None:
    tree = ast.parse(
        "def f(settings, gate: GateSettings):\n"
        "    s = settings.index\n"
        "    return settings.api.max_batch, s.m, gate.alias, Path(x).m\n"
    )
    read = _settings_read(tree)
    assert {("api", "max_batch"), ("index", "m"), ("gate", "alias")} <= read
    assert ("index", "ef_search") not in read
