"""Embedding on the fly, with the encoder of a release (dynamically batched)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from embedlake.api import problems, schemas
from embedlake.api.auth import require
from embedlake.api.limits import check_texts
from embedlake.api.state import ServingState

router = APIRouter(tags=["embed"], responses=problems.RESPONSES)


@router.post("/v1/embed", response_model=schemas.EmbedResponse, dependencies=[require("embed")])
async def embed(body: schemas.EmbedRequest, request: Request) -> schemas.EmbedResponse:
    """Vectors for ``texts`` from the encoder of a release (default: the one behind
    ``production``); the response names the model and release that produced them."""
    check_texts(request.app.state.settings.api, body.texts)
    state: ServingState = request.app.state.serving
    served = await state.aget(release=body.release, alias=body.alias)
    vectors = await served.batcher.encode(body.texts)
    return schemas.EmbedResponse(
        model=served.model.ref,
        release=served.release_id,
        dim=int(vectors.shape[1]),
        vectors=vectors.tolist(),
    )
