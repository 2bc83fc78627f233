"""Embedding on the fly, with the encoder of a release (dynamically batched).

A text longer than the encoder's window is never cut: it is refused with the window named, or,
asked for (``long: pool``), split the way the release splits documents and embedded as the mean
of its passages' vectors.
"""

from __future__ import annotations

import asyncio

import numpy as np
from fastapi import APIRouter, Request

from embedlake.api import problems, schemas
from embedlake.api.auth import require
from embedlake.api.fastjson import FastJsonRoute
from embedlake.api.limits import check_texts
from embedlake.api.state import Served, ServingState
from embedlake.encoders import normalise
from embedlake.errors import InputError, TooLarge

router = APIRouter(tags=["embed"], responses=problems.RESPONSES, route_class=FastJsonRoute)


@router.post("/v1/embed", response_model=schemas.EmbedResponse, dependencies=[require("embed")])
async def embed(body: schemas.EmbedRequest, request: Request) -> schemas.EmbedResponse:
    """Vectors for ``texts`` from the encoder of a release (default: the one behind
    ``production``); the response names the model and release that produced them."""
    check_texts(request.app.state.settings.api, body.texts)
    state: ServingState = request.app.state.serving
    served = await state.aget(release=body.release, alias=body.alias)
    short = served.splitter.short_chars
    if short is None or all(len(t) <= short for t in body.texts):
        vectors = await served.batcher.encode(body.texts)
        counts = [1] * len(body.texts)
    else:
        vectors, counts = await _long(request, served, body)
    return schemas.EmbedResponse(
        model=served.model.ref,
        release=served.release_id,
        dim=int(vectors.shape[1]),
        vectors=vectors.tolist(),
        passages=counts,
    )


async def _long(
    request: Request, served: Served, body: schemas.EmbedRequest
) -> tuple[np.ndarray, list[int]]:
    """Texts some of which may be longer than the window: refused, or split and pooled. Every
    refusal comes before the work it would bound: in ``refuse`` mode at the first text over the
    window; in ``pool`` mode, before any text is split, from the least number of passages each
    text's tokens make (so ``api.max_passages`` and ``passages.max_per_document`` are not met
    after seconds of splitting), and a text is never cut."""
    splitter = served.splitter
    first_only = body.long == "refuse"

    def count() -> list[int]:
        over = []
        for text in body.texts:
            over.append(splitter.window_tokens(text) or 0)
            if first_only and over[-1]:
                break  # the first one over is refused: the rest need not be counted
        return over

    over = await asyncio.to_thread(count)
    window = splitter.window
    if first_only:
        for n, extra in enumerate(over):
            if extra:
                assert window is not None
                raise InputError(
                    f"texts[{n}] is {extra:,} tokens longer than model {served.model.ref} reads "
                    f"({window.tokens:,} tokens, special tokens included); send "
                    '"long": "pool" to embed it as the mean of its passages, or a shorter text'
                )
    most = request.app.state.settings.api.max_passages
    if any(over):
        assert window is not None
        _may_pool(served, over, most)
    pieces: list[str] = []
    owner: list[int] = []
    for n, (text, extra) in enumerate(zip(body.texts, over, strict=True)):
        parts, lost = (await asyncio.to_thread(splitter.split_text, text)) if extra else ([text], 0)
        if lost:  # (more passages than the least estimate: never cut, refused)
            raise InputError(
                f"texts[{n}] makes more than the {splitter.chunking.max_passages:,} passages a "
                "text may have (passages.max_per_document); send a shorter text"
            )
        pieces += parts
        owner += [n] * len(parts)
        if len(pieces) > most:
            raise TooLarge(
                f"the texts make over {most:,} passages; the limit is {most:,} (api.max_passages)"
            )
    request.app.state.metrics.texts_split.labels("embed").inc(sum(1 for extra in over if extra))
    vectors = await served.batcher.encode(pieces)
    counts = np.bincount(owner, minlength=len(body.texts))
    sums = np.zeros((len(body.texts), vectors.shape[1]), dtype=np.float32)
    np.add.at(sums, np.asarray(owner), vectors)
    return normalise(sums), [int(c) for c in counts]


def _may_pool(served: Served, over: list[int], most: int) -> None:
    """Refuse, before any splitting, texts that cannot be pooled whole: passages off (a long text
    would be cut), a text whose tokens make more passages than a text may have, or texts that
    make more than ``most`` in all. Each count is the least the splitter can make
    (``Splitter.least_passages``)."""
    splitter = served.splitter
    chunking, window = splitter.chunking, splitter.window
    assert window is not None
    if not chunking.enabled:
        raise InputError(
            f"release {served.release_id or served.model.ref} embeds documents whole (passages "
            'off), so "long": "pool" cannot split a text over its window; send shorter texts'
        )
    least = [splitter.least_passages(extra) for extra in over]
    for n, passages in enumerate(least):
        if passages > chunking.max_passages:
            raise InputError(
                f"texts[{n}] makes at least {passages:,} passages; a text may have "
                f"{chunking.max_passages:,} (passages.max_per_document); send a shorter text"
            )
    if sum(least) > most:
        raise TooLarge(
            f"the texts make at least {sum(least):,} passages; the limit is {most:,} "
            "(api.max_passages)"
        )
