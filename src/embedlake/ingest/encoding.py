"""What a reader checks before it parses: the encoding a file announces and the depth of JSON.

Byte-order marks: a UTF-8 one is skipped (Excel and Notepad write it); a UTF-16 or UTF-32 one names
an encoding embedlake does not read, so the file is refused with the way out rather than rejected
row by row as "not valid UTF-8". Depth: ``json.loads`` recurses once per level and a line of
100,000 brackets raises ``RecursionError``; the depth is measured first, without recursion.
"""

from __future__ import annotations

import codecs
import re
from typing import IO

import numpy as np

from embedlake.errors import InputError

# the UTF-32 LE mark starts with the UTF-16 LE one: test the longer marks first
_WIDE_BOMS = (
    (codecs.BOM_UTF32_LE, "UTF-32 LE"),
    (codecs.BOM_UTF32_BE, "UTF-32 BE"),
    (codecs.BOM_UTF16_LE, "UTF-16 LE"),
    (codecs.BOM_UTF16_BE, "UTF-16 BE"),
)
# a string, to its closing quote or (unterminated) to the end: matched left to right, never re-entered
# (requiring the closing quote backtracks quadratically on a line of \")
_STRINGS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
_NOT_BRACKETS = re.compile(r"[^\[\]{}]+")
_STEP = np.zeros(256, dtype=np.int8)
_STEP[[ord("["), ord("{")]] = 1
_STEP[[ord("]"), ord("}")]] = -1


def skip_bom(stream: IO[bytes]) -> str | None:
    """Position ``stream`` after a UTF-8 byte-order mark (or at its start); the reason to refuse
    the file when it announces UTF-16 or UTF-32, else None. ``stream`` must be seekable (lake
    handles are)."""
    head = stream.read(4)
    if head.startswith(codecs.BOM_UTF8):
        stream.seek(len(codecs.BOM_UTF8))
        return None
    stream.seek(0)
    for bom, name in _WIDE_BOMS:
        if head.startswith(bom):
            return (
                f"the file is encoded as {name} (it starts with that byte-order mark); embedlake "
                f"reads UTF-8: convert it to UTF-8 first (e.g. iconv -f {name.split()[0]} -t UTF-8)"
            )
    return None


def strip_bom(text: str) -> str:
    """A value that starts with U+FEFF (a BOM kept by a concatenation or a spreadsheet)."""
    return text[1:] if text.startswith("\ufeff") else text


def too_deep(text: str, limit: int) -> bool:
    """Whether the JSON ``text`` nests objects and arrays deeper than ``limit`` levels.

    Brackets inside strings do not count. Linear, and cheap for the usual line: one with fewer
    brackets than the limit cannot be deeper than it.
    """
    if text.count("{") + text.count("[") <= limit:
        return False
    brackets = _NOT_BRACKETS.sub("", _STRINGS.sub("", text)).encode("ascii")
    depth = np.cumsum(_STEP[np.frombuffer(brackets, dtype=np.uint8)], dtype=np.int64)
    return bool(depth.size) and int(depth.max()) > limit


def decode(data: bytes, what: str) -> str:
    """A whole small file (a BEIR queries or qrels file) as text: a UTF-8 BOM dropped, UTF-16 or
    UTF-32 refused by name, bad UTF-8 refused with its offset (``InputError``)."""
    for bom, name in _WIDE_BOMS:
        if data.startswith(bom):
            raise InputError(
                f"{what}: encoded as {name}; embedlake reads UTF-8: convert it to UTF-8 first"
            )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{what}: not valid UTF-8 (byte {exc.start})") from None
