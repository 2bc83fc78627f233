"""Passage keys: what an index holds for a document split into passages.

A key is the document's id alone for a whole document, or the id followed by ``SEP`` and the
passage's character span in the document's text (``doc\\x1f120-980``): every engine already
stores string ids, so a hit says where it matched and no second store is needed. Ingest refuses
control characters in ids, so ``SEP`` never occurs in one (``embeddings.passages`` makes keys).
"""

from __future__ import annotations

SEP = "\x1f"


def passage_key(doc_id: str, start: int, end: int) -> str:
    return f"{doc_id}{SEP}{start}-{end}"


def doc_of(key: str) -> str:
    """The document a passage key belongs to."""
    return key.split(SEP, 1)[0] if SEP in key else key


def span_of(key: str) -> tuple[int, int] | None:
    """The passage's (start, end) character offsets in its document's text; None for a whole
    document."""
    if SEP not in key:
        return None
    start, _, end = key.split(SEP, 1)[1].partition("-")
    return int(start), int(end)
