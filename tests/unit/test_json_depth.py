"""The request body's nesting, counted without parsing it (api/limits.py)."""

from __future__ import annotations

import json
import time

import pytest

from embedlake.api.limits import json_depth


@pytest.mark.parametrize(
    ("body", "depth"),
    [
        (b"", 0),
        (b'"text"', 0),
        (b"[]", 1),
        (b'{"a": [1, {"b": []}]}', 4),
        (b'{"a": "[[[{{{", "b": ["]]]"]}', 2),  # brackets in strings are text
        (b'{"a": "say \\"[[[\\" twice", "b": [[1]]}', 3),  # so are escaped quotes
        (b"[[],[],[[]]]", 3),
    ],
)
def test_depth_counts_brackets_outside_strings(body: bytes, depth: int) -> None:
    assert json_depth(body) == depth


def test_depth_agrees_with_the_parser() -> None:
    value: object = "x"
    for n in range(200):
        value = [value] if n % 2 else {"k[": value}
    assert json_depth(json.dumps(value).encode()) == 200


def test_a_large_body_is_measured_quickly() -> None:
    wide = b"[" + b"[]," * 1_300_000 + b"[]]"  # ~4 MB: the default body limit
    started = time.perf_counter()
    assert json_depth(wide) == 2
    assert time.perf_counter() - started < 1
