"""Request and response bodies; their constraints are the API's first line of validation.

Limits that are settings (texts per request, characters per text, k, the size of a filter, see
``api/limits.py`` and ``search/limits.py``) are checked in the routes, with the setting named in
the refusal, so the OpenAPI document states only the fixed ones.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from embedlake.errors import InputError
from embedlake.ingest.pipeline import check_source

Finite = Annotated[float, Field(allow_inf_nan=False)]
# SQLite hands back naive datetimes (stored in UTC); RFC 3339 needs the offset
Time = Annotated[datetime, AfterValidator(lambda t: t if t.tzinfo else t.replace(tzinfo=UTC))]
# not blank: at least one character that is not white space
Text = Annotated[str, Field(min_length=1, pattern=r"\S")]
FilterScalar = str | int | Finite | bool
# fail_fast on every list of a request: pydantic would otherwise report every bad item, and a 4 MB
# body of a million bad items cost ~20 s of CPU and gigabytes for the errors alone (bench/limits.py)
FilterValue = FilterScalar | Annotated[list[FilterScalar], Field(fail_fast=True)]
# more fields than any api.max_filter_keys may allow are refused before their values are validated
# (a dict's max_length is checked only after every value: 300,000 bad ones took 14 s)
FILTER_KEYS_CEILING = 256


def _few_keys(value: Any) -> Any:
    if isinstance(value, dict) and len(value) > FILTER_KEYS_CEILING:
        raise ValueError(
            f"the filter has {len(value):,} fields; api.max_filter_keys allows at most "
            f"{FILTER_KEYS_CEILING}"
        )
    return value


# a release id, an alias or a model's name@version: printable (no C0 or C1 control character)
REF_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]+$"
Ref = Annotated[str, Field(min_length=1, max_length=128, pattern=REF_PATTERN)]


class _Body(BaseModel):
    # strict: a JSON number for a number, a boolean for a boolean (``"k": "3"``, ``"force":
    # "yes"`` or a vector of strings are refused, as the OpenAPI types say), unknown fields refused
    model_config = ConfigDict(extra="forbid", strict=True)


class Target(_Body):
    """Which release answers: ``release`` by id, or the release behind ``alias``
    (default: the gate's alias, ``production``). Not both."""

    release: Ref | None = None
    alias: Ref | None = None


class EmbedRequest(Target):
    texts: list[Text] = Field(min_length=1, fail_fast=True)
    long: Literal["refuse", "pool"] = Field(
        "refuse",
        description="a text longer than the encoder's window: `refuse` it (422, naming the "
        "window), or `pool`: split it as the release splits documents and return the mean of "
        "its passages' vectors. Never cut.",
    )


class EmbedResponse(BaseModel):
    model: str = Field(description="name@version of the encoder that made the vectors")
    release: str | None = Field(description="the release whose encoder it is")
    dim: int
    vectors: list[list[float]]
    passages: list[int] = Field(
        description="passages each vector is the mean of (1: the text fitted the window)"
    )


class SearchRequest(Target):
    """Exactly one of ``query`` (text), ``vector`` (with the ``model`` it came from) or ``id``
    (more like this document)."""

    query: Text | None = None
    vector: Annotated[list[Finite], Field(min_length=1, max_length=8192, fail_fast=True)] | None = (
        None
    )
    model: Ref | None = Field(None, description="name@version the vector came from")
    id: Annotated[str, Field(min_length=1, max_length=512)] | None = None
    k: int = Field(10, ge=1, description="results, at most `api.max_k` (1,000 by default)")
    filter: Annotated[dict[str, FilterValue], BeforeValidator(_few_keys)] | None = Field(
        None,
        description="`source`, or a top-level metadata field → a value or a list of values "
        "(sizes limited by the `api.max_filter_*` settings)",
    )
    mode: Literal["dense", "hybrid"] = Field(
        "dense", description="hybrid: BM25 and dense fused as the release fitted (text queries)"
    )

    @model_validator(mode="after")
    def _one_kind(self) -> SearchRequest:
        given = [n for n in ("query", "vector", "id") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of query, vector or id")
        if self.vector is not None and self.model is None:
            raise ValueError("a vector must name the model it came from (model: name@version)")
        if self.mode == "hybrid" and self.query is None:
            raise ValueError("hybrid mode needs a text query")
        return self


class Passage(BaseModel):
    text: str
    start: int = Field(description="character offset in the document's text where it starts")
    end: int = Field(description="character offset where it ends (exclusive)")


class Hit(BaseModel):
    id: str
    score: float
    title: str
    snippet: str = Field(description="the passage that matched, or the document's start")
    source: str
    passage: Passage | None = Field(
        None,
        description="the passage of a long document that matched (null: the document is one "
        "passage, all of it matched)",
    )


class SearchResponse(BaseModel):
    release: str | None
    alias: str | None
    model: str
    results: list[Hit]


class Document(BaseModel):
    id: str
    source: str
    title: str
    text: str
    metadata: dict[str, Any]


class NewDocument(_Body):
    id: Annotated[str, Field(min_length=1, max_length=512)]
    title: str = ""
    text: Text
    metadata: dict[str, Any] = {}


def _source_name(name: str) -> str:
    """The very rule ingest applies to a ``raw/<source>/`` folder: a name it would refuse later
    (after a 202, as a dead letter) is refused here."""
    try:
        return check_source(name)
    except InputError as exc:
        raise ValueError(str(exc)) from exc


class DocumentBatch(_Body):
    source: Annotated[str, Field(min_length=1, max_length=128), AfterValidator(_source_name)]
    documents: list[NewDocument] = Field(min_length=1, fail_fast=True)


class Accepted(BaseModel):
    key: str = Field(description="the raw/ object the batch was written to")
    documents: int
    status: Literal["queued"] = "queued"


class Deleted(BaseModel):
    id: str
    deleted: bool = True


class Release(BaseModel):
    id: str
    model: str
    status: str
    created_at: Time
    finished_at: Time | None
    reason: str
    aliases: list[str]
    report: dict[str, Any] | None = None


class Publish(_Body):
    release: Ref
    force: bool = False
    reason: str = ""


class Rollback(_Body):
    reason: str = ""


class AliasMove(BaseModel):
    alias: str
    from_release: str | None
    to_release: str
    kind: str
    actor: str
    reason: str
    at: Time


class Model(BaseModel):
    ref: str
    kind: str
    dim: int
    content_hash: str


class Health(BaseModel):
    status: str
    role: str
    serving: dict[str, str] = {}


class MapRelease(BaseModel):
    id: str
    model: str
    aliases: list[str]
    method: str
    documents: int


class MapIndex(BaseModel):
    alias: str = Field(description="the alias the page shows first")
    releases: list[MapRelease]
    fields: list[str] = Field(description="what points can be coloured by")
    default_field: str = Field(
        description="the field the page colours by first: the most informative of `fields` "
        "(highest entropy among those with 2 or more values)"
    )


class MapInfo(BaseModel):
    release: str
    points: int
    placed_since: int = Field(description="documents placed on the map since it was fitted")
    fit: dict[str, Any]


class MapTopic(BaseModel):
    id: str = Field(description="the point the label sits on (its cluster's most central)")
    point: int = Field(description="that point's position in the order of `/ids` and `/points`")
    x: float
    y: float
    size: int = Field(description="points of the map in the cluster when it was fitted")
    keywords: list[str]


class MapTopicLevel(BaseModel):
    clusters: int
    topics: list[MapTopic] = Field(description="largest first")


class MapTopics(BaseModel):
    levels: list[MapTopicLevel] = Field(
        description="coarse to fine: show the first zoomed out and finer ones zoomed in"
    )
    sampled: int = Field(0, description="documents whose text gave the keywords")


class MapLabels(BaseModel):
    field: str
    categories: list[str]
    counts: list[int]
    codes: str = Field(description="base64 of one little-endian uint16 per point")
