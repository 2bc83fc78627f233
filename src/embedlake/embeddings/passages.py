"""Passages: how a document longer than the encoder's window becomes several texts to embed.

A document is split by tokens of the encoder's own tokenizer, on sentence and paragraph boundaries
where possible (semantic-text-splitter, counting with that tokenizer), with an overlap between
neighbours; the title goes with every passage. A document that fits is one passage, embedded
exactly as before passages existed (its title and text), so short collections do not change.

A passage's key in an index is its document's id, alone for a whole document, or followed by
the passage's character span (``index.keys``).

The chunking (``Chunking``) is part of a release's identity: its ``key`` is recorded with every
vector the model makes with it, and two chunkings never mix (``""``: passages off, the whole
document cut at the window, as before).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from embedlake.errors import InputError
from embedlake.index.keys import passage_key

if TYPE_CHECKING:
    from embedlake.config import PassagesSettings
    from embedlake.encoders import TokenWindow

MIN_SIZE = 32  # tokens: below this, a title leaves a passage almost no room
_KEY = re.compile(r"p(\d+)-o(\d+)-m(\d+)")


@dataclass(frozen=True)
class Chunking:
    """How documents are split: ``size`` tokens per passage (title and special tokens included;
    0 = passages off), ``overlap`` tokens shared by neighbours, at most ``max_passages``."""

    size: int = 0
    overlap: int = 0
    max_passages: int = 1

    @property
    def key(self) -> str:
        return "" if self.size == 0 else f"p{self.size}-o{self.overlap}-m{self.max_passages}"

    @property
    def enabled(self) -> bool:
        return self.size > 0

    @classmethod
    def from_key(cls, key: str) -> Chunking:
        if not key:
            return cls()
        match = _KEY.fullmatch(key)
        if match is None:
            raise InputError(f"not a chunking key: {key!r}")
        size, overlap, most = (int(g) for g in match.groups())
        return cls(size, overlap, most)

    @classmethod
    def resolve(cls, settings: PassagesSettings, window: int | None) -> Chunking:
        """The chunking ``settings`` give an encoder that reads ``window`` tokens (None: no
        window, as LSA, which reads whole texts: nothing to split)."""
        if not settings.enabled or window is None:
            return cls()
        size = settings.size or window
        if not MIN_SIZE <= size <= window:
            raise InputError(
                f"passages.size is {size}; it must be between {MIN_SIZE} and the encoder's "
                f"window, {window} tokens (0 means the window)"
            )
        overlap = size // 8 if settings.overlap < 0 else settings.overlap
        if overlap >= size // 2:
            raise InputError(
                f"passages.overlap is {overlap} tokens; it must be under half the passage "
                f"size ({size} tokens)"
            )
        return cls(size, overlap, settings.max_per_document)

    def describe(self) -> dict[str, Any]:
        """What a release report and ``status`` show."""
        if not self.enabled:
            return {"key": "", "passages": False}
        return {
            "key": self.key,
            "passages": True,
            "size": self.size,
            "overlap": self.overlap,
            "max_per_document": self.max_passages,
        }


@dataclass(frozen=True)
class Passage:
    key: str
    text: str  # what the encoder reads: the title and the passage
    start: int  # character offsets in the document's text
    end: int


@dataclass(frozen=True)
class Split:
    passages: list[Passage]
    cut: int  # characters of the document no passage holds (0: all of it is embedded)


class Splitter:
    """Splits documents (and long queries) the way one chunking says, with one encoder's
    tokenizer. Without a window (or with passages off) every text is one passage."""

    def __init__(self, chunking: Chunking, window: TokenWindow | None) -> None:
        self.chunking = chunking
        self.window = window
        self._splitters: dict[tuple[int, int], Any] = {}
        self._specials = 0
        if window is not None:
            self._specials = len(window.tokenizer.encode("", add_special_tokens=True).ids)

    @property
    def short_chars(self) -> int | None:
        """Texts of at most this many characters fit the window without counting tokens (a
        token spans at least one character); None: every text fits (no window)."""
        if self.window is None:
            return None
        return (self.chunking.size or self.window.tokens) - self._specials

    def window_tokens(self, text: str) -> int | None:
        """How many tokens ``text`` has beyond what the encoder's window reads (0: it fits;
        None: no window, every text fits)."""
        if self.window is None:
            return None
        if len(text) <= self.window.tokens - self._specials:
            return 0
        n = len(self.window.tokenizer.encode(text, add_special_tokens=False).ids)
        return max(0, n + self._specials - self.window.tokens)

    def least_passages(self, over: int) -> int:
        """The fewest passages a free text ``over`` tokens longer than the window can be split
        into (a passage holds at most its size less the special tokens; overlaps and sentence
        ends only add): what a limit on passages can be checked against before splitting."""
        if self.window is None or not self.chunking.enabled or over <= 0:
            return 1
        tokens = over + self.window.tokens - self._specials
        return -(-tokens // (self.chunking.size - self._specials))

    def split_many(self, docs: list[tuple[str, str, str]]) -> list[Split]:
        """``(id, title, text)`` each → its passages. The tokenizer and the splitter work on
        the whole batch at once, on every core (both are Rust, and release the GIL)."""
        if self.window is None:
            return [Split([_whole(d, t, x)], 0) for d, t, x in docs]
        whole = [_join(t, x) for _, t, x in docs]
        counts = [
            len(e.ids) for e in self.window.tokenizer.encode_batch(whole, add_special_tokens=False)
        ]
        limit = (self.chunking.size or self.window.tokens) - self._specials
        out: list[Split | None] = [None] * len(docs)
        long: list[int] = []
        for n, ((doc_id, title, text), full, count) in enumerate(
            zip(docs, whole, counts, strict=True)
        ):
            if count <= limit:
                out[n] = Split([_whole(doc_id, title, text)], 0)
            elif not self.chunking.enabled:
                out[n] = Split([_whole(doc_id, title, text)], len(full) - self._fits(full))
            else:
                long.append(n)
        for n, split in zip(long, self._passages([docs[n] for n in long]), strict=True):
            out[n] = split
        return [s for s in out if s is not None]

    def split_text(self, text: str) -> tuple[list[str], int]:
        """A free text (a query, a text sent to /v1/embed) → its passages and the characters
        cut (passages off: the text itself, cut at the window by the encoder)."""
        [split] = self.split_many([("", "", text)])
        return [p.text for p in split.passages], split.cut

    def _fits(self, text: str) -> int:
        """How many leading characters of ``text`` the encoder's window holds."""
        assert self.window is not None
        enc = self.window.tokenizer.encode(text, add_special_tokens=False)
        last = self.window.tokens - self._specials - 1
        return enc.offsets[last][1] if last < len(enc.offsets) else len(text)

    def _passages(self, docs: list[tuple[str, str, str]]) -> list[Split]:
        """Documents longer than a passage, split; those whose titles leave the same room are
        split together."""
        assert self.window is not None
        size = self.chunking.size
        most = size // 4  # a long title would leave the text no room: it is shortened
        titled = [t for _, t, _ in docs if t]
        tokenizer = self.window.tokenizer
        encoded = iter(tokenizer.encode_batch(titled, add_special_tokens=False) if titled else [])
        groups: dict[int, list[tuple[int, str]]] = {}
        for n, (_, title, _) in enumerate(docs):
            used = 0
            if title:
                tokens = next(encoded)
                if len(tokens.ids) > most:
                    title = title[: tokens.offsets[most - 1][1]]
                used = min(len(tokens.ids), most) + 1
            capacity = size - self._specials - used - 1  # a token spare: joining may add one
            groups.setdefault(capacity, []).append((n, title))
        out: list[Split] = [Split([], 0)] * len(docs)
        for capacity, members in groups.items():
            overlap = min(self.chunking.overlap, capacity // 2)
            texts = [docs[n][2] for n, _ in members]
            chunked = self._splitter(capacity, overlap).chunk_all_indices(texts)
            for (n, title), chunks in zip(members, chunked, strict=True):
                out[n] = self._split(docs[n][0], title, docs[n][2], chunks)
        return out

    def _split(self, doc_id: str, title: str, text: str, chunks: list[tuple[int, str]]) -> Split:
        if not chunks:  # only whitespace after all
            return Split([_whole(doc_id, title, text)], 0)
        kept = chunks[: self.chunking.max_passages]
        passages = [
            Passage(passage_key(doc_id, o, o + len(c)), _join(title, c), o, o + len(c))
            for o, c in kept
        ]
        end = passages[-1].end
        return Split(passages, len(text[end:].strip()) if len(kept) < len(chunks) else 0)

    def _splitter(self, capacity: int, overlap: int) -> Any:
        splitter = self._splitters.get((capacity, overlap))
        if splitter is None:
            from semantic_text_splitter import TextSplitter

            assert self.window is not None
            splitter = TextSplitter.from_huggingface_tokenizer(
                self.window.tokenizer, capacity=capacity, overlap=overlap
            )
            self._splitters[(capacity, overlap)] = splitter
        return splitter


def _join(title: str, text: str) -> str:
    """The text an encoder embeds: title and body (``Document.full_text``'s rule)."""
    return f"{title} {text}".strip() if title else text


def _whole(doc_id: str, title: str, text: str) -> Passage:
    return Passage(doc_id, _join(title, text), 0, len(text))
