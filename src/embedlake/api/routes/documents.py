"""Documents: read one, add a batch (through the lake, so the ingest function handles it), delete.

Ids may hold any character, ``/`` included: clients percent-encode them (``a%2Fb``), the server
decodes the path before routing, so the routes take the rest of the path (``{doc_id:path}``).
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from embedlake.api import problems, schemas
from embedlake.api.auth import require
from embedlake.api.fastjson import FastJsonRoute
from embedlake.errors import InputError, TooLarge
from embedlake.ingest.normalize import to_document
from embedlake.ingest.pipeline import delete_document
from embedlake.workspace import Workspace

router = APIRouter(tags=["documents"], responses=problems.RESPONSES, route_class=FastJsonRoute)


@router.get(
    "/v1/documents/{doc_id:path}", response_model=schemas.Document, dependencies=[require("search")]
)
async def get_document(doc_id: str, request: Request) -> schemas.Document:
    """A live document with its metadata (404 once deleted)."""
    return await document(request, doc_id)


async def document(request: Request, doc_id: str) -> schemas.Document:
    ws: Workspace = request.app.state.ws
    doc = await run_in_threadpool(ws.catalog.documents.get, doc_id)
    return schemas.Document(
        id=doc.id, source=doc.source, title=doc.title, text=doc.text, metadata=doc.metadata
    )


@router.post(
    "/v1/documents",
    response_model=schemas.Accepted,
    status_code=202,
    dependencies=[require("write")],
)
async def add_documents(body: schemas.DocumentBatch, request: Request) -> schemas.Accepted:
    """Write the batch to the lake as ``raw/<source>/api-….jsonl``; the ingest function picks it
    up like any dropped file (validation, quarantine, embedding by the runtime's functions)."""
    ws: Workspace = request.app.state.ws
    limit = ws.settings.api.max_texts
    if len(body.documents) > limit:
        raise TooLarge(
            f"{len(body.documents):,} documents; the limit is {limit:,} per request (api.max_texts)"
        )
    _check_sizes(body, ws.settings.ingest.max_document_bytes)
    _check_documents(body, ws.settings.ingest.max_document_bytes)
    await run_in_threadpool(_check_owners, ws, body)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    key = f"raw/{body.source}/api-{stamp}-{uuid.uuid4().hex[:12]}.jsonl"
    lines = (json.dumps(d.model_dump(), ensure_ascii=False) for d in body.documents)
    await run_in_threadpool(ws.lake.put, key, ("\n".join(lines) + "\n").encode())
    return schemas.Accepted(key=key, documents=len(body.documents))


def _check_sizes(body: schemas.DocumentBatch, limit: int) -> None:
    """Ingest's own per-document limit, applied before the batch is written: a document ingest
    would quarantine later is refused now, naming it and the setting."""
    for number, doc in enumerate(body.documents):
        size = len(doc.text.encode()) + len(doc.title.encode())
        if size > limit:
            raise TooLarge(
                f"document {number} ({doc.id!r}) is {size:,} bytes; the limit is {limit:,} "
                "(ingest.max_document_bytes)"
            )


def _check_documents(body: schemas.DocumentBatch, limit: int) -> None:
    """Every document through ingest's own validation (``normalize.to_document``) before the
    batch is written, so a 202 is never followed by a quarantine: an id with control characters,
    an id ingest would store otherwise (trimmed, NFC: a GET by the id sent would then miss), a
    document empty after normalisation, metadata that is not JSON (NaN), an id twice."""
    first: dict[str, int] = {}
    for number, doc in enumerate(body.documents):
        try:
            stored = to_document(
                doc.model_dump(), source=body.source, id_prefix="", max_bytes=limit
            )
        except InputError as exc:
            raise InputError(f"document {number} ({doc.id[:64]!r}): {exc}") from None
        if stored.id != doc.id:
            raise InputError(
                f"document {number}: the id {doc.id[:64]!r} would be stored as "
                f"{stored.id[:64]!r} (white space trimmed, Unicode NFC); send that id"
            )
        if first.setdefault(stored.id, number) != number:
            raise InputError(
                f"document {number}: the id {doc.id[:64]!r} is also document "
                f"{first[stored.id]} of this batch"
            )


def _check_owners(ws: Workspace, body: schemas.DocumentBatch) -> None:
    """An id another source has is refused now, as ingest would refuse it after the 202 (two
    batches both still waiting for ingest can only meet there)."""
    owners = ws.catalog.documents.sources([d.id for d in body.documents])
    for number, doc in enumerate(body.documents):
        owner = owners.get(doc.id)
        if owner is not None and owner != body.source:
            raise InputError(
                f"document {number}: the id {doc.id[:64]!r} belongs to source {owner!r} (an id "
                "is one document of one source); send it to that source, or another id"
            )


@router.delete(
    "/v1/documents/{doc_id:path}", response_model=schemas.Deleted, dependencies=[require("write")]
)
async def remove_document(doc_id: str, request: Request) -> schemas.Deleted:
    """Tombstone a document: it leaves the results of every release at once."""
    await run_in_threadpool(delete_document, request.app.state.ws, doc_id)
    return schemas.Deleted(id=doc_id)
