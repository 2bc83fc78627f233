"""What a sentence-transformers folder is made of, in the pooling formats of before and since
sentence-transformers 6 (a model fine-tuned here is saved in the new one)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from embedlake.encoders.forms.source import describe
from embedlake.errors import InputError

MODULES = [
    {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
    {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    {"idx": 2, "name": "2", "path": "2_Normalize", "type": "x.Normalize"},
]


def _folder(tmp_path: Path, pooling: dict[str, object]) -> Path:
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "modules.json").write_text(json.dumps(MODULES))
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    (tmp_path / "config.json").write_text(json.dumps({"max_position_embeddings": 512}))
    return tmp_path


@pytest.mark.parametrize(
    ("pooling", "mode"),
    [
        ({"word_embedding_dimension": 384, "pooling_mode_mean_tokens": True}, "mean"),
        ({"word_embedding_dimension": 384, "pooling_mode_cls_token": True}, "cls"),
        ({"embedding_dimension": 384, "pooling_mode": "mean", "include_prompt": True}, "mean"),
        ({"embedding_dimension": 384, "pooling_mode": "cls"}, "cls"),
    ],
)
def test_both_pooling_formats_are_read(
    tmp_path: Path, pooling: dict[str, object], mode: str
) -> None:
    source = describe(_folder(tmp_path, pooling))
    assert (source.pooling, source.dim, source.normalize, source.max_position) == (
        mode,
        384,
        True,
        512,
    )


def test_a_pooling_no_form_can_serve_is_named(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="only mean or CLS pooling"):
        describe(_folder(tmp_path, {"embedding_dimension": 384, "pooling_mode": "max"}))
