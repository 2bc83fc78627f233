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
    """Texts some of which may be longer than the window: refused, or split and pooled."""
    splitter = served.splitter
    over = await asyncio.to_thread(lambda: [splitter.window_tokens(t) or 0 for t in body.texts])
    if body.long == "refuse":
        for n, extra in enumerate(over):
            if extra:
                assert splitter.window is not None
                raise InputError(
                    f"texts[{n}] is {extra:,} tokens longer than model {served.model.ref} reads "
                    f"({splitter.window.tokens:,} tokens, special tokens included); send "
                    '"long": "pool" to embed it as the mean of its passages, or a shorter text'
                )
    pieces: list[str] = []
    owner: list[int] = []
    cut = 0  # passages off: a long text is one passage, cut at the window
    for n, (text, extra) in enumerate(zip(body.texts, over, strict=True)):
        parts, lost = (await asyncio.to_thread(splitter.split_text, text)) if extra else ([text], 0)
        cut += lost > 0
        pieces += parts
        owner += [n] * len(parts)
    most = request.app.state.settings.api.max_passages
    if len(pieces) > most:
        raise TooLarge(
            f"the texts make {len(pieces):,} passages; the limit is {most:,} (api.max_passages)"
        )
    metrics = request.app.state.metrics
    metrics.texts_split.labels("embed").inc(sum(1 for extra in over if extra) - cut)
    metrics.texts_cut.labels("embed").inc(cut)
    vectors = await served.batcher.encode(pieces)
    counts = np.bincount(owner, minlength=len(body.texts))
    sums = np.zeros((len(body.texts), vectors.shape[1]), dtype=np.float32)
    np.add.at(sums, np.asarray(owner), vectors)
    return normalise(sums), [int(c) for c in counts]
