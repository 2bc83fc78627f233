"""Docs checked by tests: every setting is documented, every command appears in the README tour."""

from __future__ import annotations

from pydantic import BaseModel

from embedlake.config import Settings
from tests.conftest import ROOT


def _keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys += _keys(annotation, f"{prefix}{name}.")
        elif name != "workspace":
            keys.append(prefix + name)
    return keys


def test_every_setting_is_documented() -> None:
    text = (ROOT / "docs" / "settings.md").read_text(encoding="utf-8")
    missing = [k for k in _keys(Settings) if f"`{k}`" not in text]
    assert missing == []


def test_readme_tour_names_the_main_commands() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    for command in ("init", "ingest", "embed", "index", "search", "bench", "sql"):
        assert f"embedlake {command} " in text
    assert "make demo" in text and "make test" in text
