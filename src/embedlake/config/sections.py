"""The sections of the settings, each field with its default, its limits and its description.

The descriptions (and each section's docstring) are the settings' only documentation:
:mod:`embedlake.config.docs` writes the default ``embedlake.toml`` and docs/settings.md from them,
so they are written for a user, in Markdown, and a test fails when the page has drifted.
"""

from __future__ import annotations

import types
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationInfo, field_validator


class _Section(BaseModel):
    """A ``[section]`` of settings; a key it does not know is refused, so a typo never passes."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _no_boolean_for_a_number(cls, value: Any, info: ValidationInfo) -> Any:
        """TOML's ``true`` is no number: pydantic would take it as 1 (``max_record_bytes =
        true`` refused every line over 1 byte). An environment variable's "true" is a string,
        refused for a number already."""
        field = cls.model_fields.get(info.field_name or "")
        if isinstance(value, bool) and field is not None and _number_only(field.annotation):
            raise ValueError("a number is needed here, not true or false")
        return value


def _number_only(annotation: Any) -> bool:
    """Whether a field of this type takes numbers but no boolean."""
    if annotation in (int, float):
        return True
    if get_origin(annotation) in (Union, types.UnionType):
        kinds = [a for a in get_args(annotation) if a is not type(None)]
        return bool(kinds) and bool not in kinds and all(_number_only(a) for a in kinds)
    return False


class LakeSettings(_Section):
    """The lake: the object store that is the source of truth (a local folder or any S3 API)."""

    url: str = Field(
        default="lake",
        description="the lake: a folder (relative to the workspace), `file:///path`, "
        "or `s3://bucket/prefix`",
    )
    endpoint_url: str = Field(
        default="", description="an S3-compatible endpoint (MinIO, Ceph, moto); empty means AWS S3"
    )
    region: str = Field(default="", description="the S3 region (empty: boto's default)")
    access_key_id: str = Field(
        default="",
        description="S3 access key; empty uses boto's credential chain (instance role, `~/.aws`, "
        "`AWS_*` variables), the right choice on AWS",
    )
    secret_access_key: SecretStr | None = Field(default=None, description="S3 secret key")
    multipart_mb: int = Field(
        default=64,
        ge=5,
        description="S3 objects larger than this many MB are uploaded in parts of this size "
        "(at least 5)",
    )
    events: Literal["scan", "sqs"] = Field(
        default="scan",
        description="how the runtime notices objects others wrote to a remote lake: `scan` lists "
        "the watched prefixes every `lake.scan_seconds`; `sqs` reads the bucket's notifications "
        "from `lake.queue_url` (and still scans, less often, as the safety net)",
    )
    queue_url: str = Field(
        default="",
        description="the SQS queue the bucket's `s3:ObjectCreated:*`/`s3:ObjectRemoved:*` "
        'notifications go to (read with `lake.events = "sqs"`)',
    )
    scan_seconds: float = Field(
        default=5.0,
        gt=0,
        description="seconds between listings of a remote lake's watched prefixes "
        "(with `sqs`: ten times this)",
    )


class CatalogSettings(_Section):
    """The catalog: the database of documents, models, releases, aliases and API keys."""

    url: str = Field(
        default="sqlite:///catalog.db",
        description="the catalog: any SQLAlchemy URL, SQLite or PostgreSQL (relative SQLite paths "
        "resolve against the workspace)",
    )
    password: SecretStr | None = Field(
        default=None, description="the database password, kept out of the URL"
    )


class IngestSettings(_Section):
    """Ingestion: documents read from the lake's `raw/` into the catalog."""

    max_document_bytes: int = Field(
        default=1_000_000,
        gt=0,
        description="a document (title + text, UTF-8) larger than this many bytes is rejected",
    )
    batch_size: int = Field(
        default=2_000, gt=0, description="records upserted per catalog transaction"
    )
    max_record_bytes: int = Field(
        default=10_000_000,
        gt=0,
        description="a record larger than this many bytes (a line of .jsonl, a whole .txt or .md "
        "file) is rejected without being read into memory",
    )
    max_json_depth: int = Field(
        default=64,
        gt=0,
        description="a JSON record (a line of .jsonl) nesting objects and arrays "
        "deeper than this is rejected before it is parsed",
    )
    worker: Literal["auto", "on", "off"] = Field(
        default="auto",
        description="read and validate a .jsonl, .ndjson or .csv file in a second process while "
        "this one writes the catalog: `auto` for files of 32 MiB and more on two cores or more, "
        "`on` for every such file, `off` never",
    )


class EmbedSettings(_Section):
    """Embedding: batch inference for releases and streaming inference of new documents."""

    model: str = Field(
        default="minilm",
        description="the model the functions runtime embeds new documents with while no model "
        "has an index",
    )
    batch_size: int = Field(default=32, gt=0, description="texts per encoder forward pass")
    shard_size: int = Field(
        default=2_048,
        gt=0,
        description="documents per durable shard of batch inference (the unit of resumption)",
    )
    device: str = Field(
        default="auto", description="`auto` (CUDA when present, else CPU), `cpu` or `cuda`"
    )
    max_seq_length: int = Field(
        default=256,
        gt=0,
        description="word pieces a sentence-transformers model reads; longer texts are truncated",
    )
    lsa_components: int = Field(default=256, gt=1, description="SVD components of an LSA model")
    lsa_fit_sample: int = Field(
        default=200_000,
        ge=2,
        le=100_000_000,
        description="an LSA model is fitted on a seeded uniform sample of this many live "
        "documents (all of them when fewer), so that fitting one on a large collection holds a "
        "sample's texts, not the collection's; every document is then embedded",
    )
    processes: Literal["auto"] | Annotated[int, Field(ge=1, le=256)] = Field(
        default="auto",
        description="worker processes that batch inference (`embedlake embed`) runs its shards "
        "in: `auto` is one per core for an encoder that computes on one core (LSA) when 50,000 "
        "documents or more are to embed, and 1 otherwise (torch and ONNX Runtime use every core "
        "already); each process loads the model",
    )


class PassagesSettings(_Section):
    """Long documents: a document longer than the encoder's window is split into passages (by
    the encoder's own tokenizer, on sentence and paragraph boundaries where possible, the title
    with every passage), and documents are ranked by their passages. Part of a release's
    identity: changing these means new vectors and a new release."""

    enabled: bool = Field(
        default=True,
        description="split long documents into passages; `false` embeds each document as one "
        "text, cut at the encoder's window (every cut is counted and reported)",
    )
    size: int = Field(
        default=0,
        ge=0,
        description="tokens per passage, title and special tokens included; 0 means the "
        "encoder's window (256 for all-MiniLM-L6-v2 as served here)",
    )
    overlap: int = Field(
        default=-1,
        ge=-1,
        description="tokens two neighbouring passages share; -1 means an eighth of the size",
    )
    max_per_document: int = Field(
        default=64,
        gt=0,
        le=4096,
        description="passages kept per document; a longer document's tail is not embedded, "
        "and is counted as cut",
    )
    aggregate: Literal["max", "sum"] = Field(
        default="max",
        description="a document's score from its passages' scores: `max` (its best passage, "
        "MaxP) or `sum` (the sum of its best `aggregate_top` passages)",
    )
    aggregate_top: int = Field(
        default=3, gt=0, le=64, description='passages summed by `aggregate = "sum"`'
    )


class IndexSettings(_Section):
    """The ANN index each release builds."""

    engine: Literal["auto", "hnsw", "rabitq-hnsw", "rabitq", "exact", "pgvector"] = Field(
        default="auto",
        description="`rabitq-hnsw` (rabitqlib's HNSW graph walked over RaBitQ codes, ~630 "
        "bytes a 384-d vector in memory at 7 bits and `m` 32, fp32 vectors memory-mapped for "
        "re-scoring: the fastest at a recall target, see "
        "[decision 0032](decisions/0032-graph-over-codes.md)); `hnsw` (faiss, fp32 vectors in a "
        "graph, ~1,800 bytes a 384-d vector); `rabitq` (rabitqlib's IVF over RaBitQ codes, "
        "~360 bytes a 384-d vector at 7 bits in memory, fp32 vectors memory-mapped for "
        "re-scoring, the fastest to build; see "
        "[decision 0024](decisions/0024-search-effort-and-compressed-index.md)); `exact` "
        "(brute force over every vector): files in the lake loaded by each serving process; "
        "`pgvector` (vectors and HNSW index in the PostgreSQL catalog: needs a `postgresql` "
        "catalog URL); `auto`: `rabitq` from `compress_above` vectors or where `rabitq-hnsw`'s "
        "graph and codes would take more than half of this machine's memory, else `rabitq-hnsw`",
    )
    compress_above: int = Field(
        default=2_000_000,
        ge=0,
        description="`engine = auto`: from this many vectors on, the `rabitq` engine (IVF: about "
        "half the build time of a graph, whose build at ten million would take hours on 2 cores)",
    )
    nlist: int = Field(
        default=0,
        ge=0,
        description="`rabitq`: inverted lists (k-means clusters); 0: about 4·√n of the vectors "
        "indexed, with at least 64 vectors a list",
    )
    bits: int = Field(
        default=7,
        ge=1,
        le=9,
        description="`rabitq`, `rabitq-hnsw`: bits a dimension of their codes (7: ~350 bytes a "
        "384-d vector; "
        "fewer bits need more candidates re-scored for the same recall)",
    )
    nprobe: int | None = Field(
        default=None,
        ge=1,
        description="`rabitq`: lists a search visits; unset: the smallest that reaches "
        "`recall_target`, measured at build and saved; a number here overrides it",
    )
    m: int = Field(default=32, ge=4, description="HNSW graph degree (`hnsw`, `rabitq-hnsw`)")
    ef_construction: int = Field(
        default=200, ge=8, description="HNSW build-time candidate list (`hnsw`, `rabitq-hnsw`)"
    )
    ef_search: int | None = Field(
        default=None,
        ge=1,
        description="HNSW search-time candidate list (recall against speed), for `hnsw`, "
        "`rabitq-hnsw` and `pgvector`; unset: the smallest that reaches `recall_target`, "
        "measured when the index is built and saved with it; a number here overrides it, at "
        "build and when loaded",
    )
    recall_target: float = Field(
        default=0.95,
        ge=0,
        le=1,
        description="the recall@10 against exact search each index is tuned to when it is built: "
        "the smallest `ef_search` (`rabitq`: `nprobe`, its `rescore` settled first; quantised "
        "`exact`: `rescore`) that reaches it, with a sample of the vectors held back from "
        "the index as queries and a span of 8-32 words of each embedded as a query, is kept "
        "(a served search for k hits runs at the effort of k), and recorded in the "
        "index's params and the release report; `0`: no tuning (`ef_search` 128, "
        "`nprobe` 16, `rescore` 10). A workspace made before tuning has `ef_search = 128` and "
        "`rescore = 10` written in its file: delete those lines to have them tuned",
    )
    tune_sample: int = Field(
        default=500,
        ge=1,
        le=10_000,
        description="vectors held back and searched to measure recall when an index is tuned "
        "(at most a fifth of them; under 20, nothing is tuned); a recall near 0.95 measured on 500 "
        "is within about ±0.01",
    )
    build_memory: int = Field(
        default=2_048,
        ge=1,
        le=1_048_576,
        description="MiB an index build may hold besides the index itself: the vectors are read "
        "from their shards in batches of an eighth of it (and one shard's file), and `rabitq` "
        "trains its lists on a sample of at most half of it, never all the vectors at once",
    )
    quantization: Literal["none", "int8", "binary"] = Field(
        default="none",
        description="`exact` engine only: `none` scans the fp32 vectors; `int8` (a byte a "
        "dimension, 4× smaller) or `binary` (a bit a dimension, 32× smaller) scans compressed "
        "codes held in memory while the fp32 vectors stay memory-mapped on disk (see "
        "[decision 0013](decisions/0013-quantised-search.md)); set at build time and saved with "
        "the index",
    )
    rescore: int | None = Field(
        default=None,
        ge=0,
        description="quantised `exact`, `rabitq` and `rabitq-hnsw` indexes: the best k × "
        "`rescore` candidates by their codes are re-scored with their fp32 vectors (only those "
        "rows are read) and the top k returned with exact scores; `0` (`exact` only) returns the "
        "codes' approximate scores. Unset: the smallest that reaches `recall_target`, measured "
        "at build and saved (with `nprobe` set, `rescore` stays 10; `rabitq-hnsw`: 1, its walk "
        "tuned instead); a number here overrides it, at build and when loaded",
    )


class GateSettings(_Section):
    """The gate: a new release is benchmarked against the release behind an alias, and the alias
    moves to it only when it passes."""

    alias: str = Field(
        default="production",
        description="the alias a new release is benchmarked against and moved to when it passes",
    )
    policy: Literal["no_regression", "certified_gain"] = Field(
        default="no_regression",
        description="no_regression: the change of nDCG@10 against the alias's release, on the "
        "same queries, has a lower confidence bound above −max_ndcg_drop; certified_gain: also "
        "above min_gain (publish only what is shown to be better)",
    )
    certify: Literal["aggregate", "each"] = Field(
        default="aggregate",
        description="certified_gain over all datasets together (each counted once), or on each",
    )
    max_ndcg_drop: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description="tolerance: the lower confidence bound of the nDCG@10 change may not fall "
        "below −this, per dataset and in aggregate",
    )
    min_gain: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="certified_gain: the lower confidence bound of the nDCG@10 change must be "
        "above this",
    )
    confidence: float = Field(
        default=0.95,
        ge=0.5,
        lt=1,
        description="confidence level of the gate's intervals (paired bootstrap over queries)",
    )
    resamples: int = Field(
        default=10_000,
        ge=1000,
        le=100_000,
        description="bootstrap resamples (and sign flips of the p-value) per comparison",
    )
    min_ann_recall: float = Field(
        default=0.95,
        ge=0,
        le=1,
        description="the release's index must reach this ANN recall@10 against exact search",
    )
    datasets: list[str] = Field(
        default=[], description="registered benchmark datasets the gate evaluates on (empty: all)"
    )


class ReduceSettings(_Section):
    """PCA (dimension reduction), fitted with every release."""

    variance: float = Field(
        default=0.95,
        gt=0,
        le=1,
        description="PCA per release keeps enough components for this share of the variance",
    )
    components: int = Field(
        default=0, ge=0, description="a fixed number of PCA components instead (0: by variance)"
    )
    fit_sample: int = Field(
        default=100_000,
        ge=3,
        le=10_000_000,
        description="PCA is fitted on a seeded uniform sample of this many of a release's "
        "vectors (all of them when fewer), read a batch at a time: a collection of any size "
        "fits in the memory of the sample",
    )
    back_index: bool = Field(
        default=False,
        description="build each release's index on its PCA-reduced vectors (queries are reduced "
        "the same way)",
    )


class TrainingSettings(_Section):
    """ "Repeat": retrain by rule or schedule. Off while `training.kind` is empty."""

    kind: Literal["", "lsa", "sentence-transformers"] = Field(
        default="",
        description='automatic retraining ("repeat"): `lsa` or `sentence-transformers`; '
        "empty turns it off",
    )
    base: str = Field(default="minilm", description="the model fine-tuning starts from")
    pairs: str = Field(
        default="self:title",
        description="training pairs: `qrels:PATH` (a BEIR folder: its train.tsv, else a seeded "
        "split of test.tsv), or with no labels `self:title` or `self:span` (a span of a document "
        "against the rest of it)",
    )
    epochs: int = Field(
        default=1, ge=1, le=100, description="fine-tuning epochs (with dev queries, the best kept)"
    )
    batch_size: int = Field(default=32, ge=2, le=4096, description="fine-tuning batch size")
    learning_rate: float = Field(
        default=5e-5,
        gt=0,
        le=1,
        description="fine-tuning learning rate (5e-5 certified gains on 3 of 5 collections where "
        "2e-5 did on 1: docs/benchmarks.md, section 7)",
    )
    loss: Literal["mnrl", "cached_mnrl", "gist"] = Field(
        default="mnrl",
        description="mnrl: multiple-negatives ranking; cached_mnrl: the same with GradCache (large "
        "batches in little memory); gist: GISTEmbed, the starting model as guide against false "
        "in-batch negatives",
    )
    hard_negatives: int = Field(
        default=1,
        ge=0,
        le=16,
        description="hard negatives mined per training pair (0: in-batch negatives only)",
    )
    negative_sources: list[Literal["bm25", "live"]] = Field(
        default=["bm25", "live"],
        description="where hard negatives are mined: BM25 and/or the live release's model",
    )
    negative_ranks: list[int] = Field(
        default=[3, 50],
        min_length=2,
        max_length=2,
        description="the rank window [first, last) negatives are taken from in each source's "
        "ranking (skipping the very top, where unjudged answers are likeliest)",
    )
    negative_margin: float = Field(
        default=0.05,
        ge=0,
        lt=1,
        description="a candidate the live model scores above (1 − this) × the positive's score is "
        "taken for an unjudged answer and not used as a negative",
    )
    mining_corpus: int = Field(
        default=20_000,
        ge=100,
        le=1_000_000,
        description="documents ranked for mining and for the dev evaluation: those the pairs "
        "point to plus a seeded sample of the rest",
    )
    dev_share: float = Field(
        default=0.2,
        ge=0,
        lt=1,
        description="without a dev.tsv: the share of the training queries kept to choose the epoch",
    )
    name: str = Field(
        default="auto", description="name of the retrained models (versions are content hashes)"
    )
    grow: float = Field(
        default=0.2,
        ge=0,
        description="retrain once the live corpus has grown by this share since the production "
        "release (0: never)",
    )
    schedule: str = Field(
        default="",
        description='also retrain on this cron schedule, e.g. `"0 3 * * 0"` (empty: never)',
    )


class ReleaseSettings(_Section):
    """Release retention and catching up."""

    keep_moves: int = Field(
        default=5,
        ge=1,
        description="retention never removes a release an alias points to or pointed to in its "
        "last N moves",
    )
    catch_up_limit: int = Field(
        default=1000,
        ge=0,
        description="publish and rollback by hand first embed and index the documents a release "
        "lacks, up to this many; a release further behind is refused with the count (run "
        "`embedlake catch-up`). The runtime's own publish always catches up",
    )
    bm25_rebuild_max: int = Field(
        default=200_000,
        ge=0,
        description="a release's BM25 (hybrid search) is built and saved with it; once "
        "documents have changed since, a search process builds it again over the live passages "
        "when the release's BM25 holds at most this many (~10 s at 100,000 on 2 cores), and "
        "otherwise serves the saved one until the next release: a search never waits minutes "
        "and gigabytes for it (6.8 GB and 136 s at a million documents; docs/benchmarks.md, "
        "section 18). Documents changed since are then found by the dense side only",
    )


class ServingSettings(_Section):
    """The serving form a release's sentence-transformers model is served in (its corpus vectors
    and its queries both): the fastest of `serving.forms` that is faster than the model beyond the
    noise of the timing and keeps its quality on the gate datasets (not significantly worse per
    query, and within `serving.max_ndcg_loss`); none passing: the model itself."""

    forms: list[
        Literal[
            "torch-bf16",
            "cuda-fp16",
            "onnx-fp32",
            "onnx-int8",
            "openvino-fp32",
            "openvino-bf16",
            "openvino-int8",
            "static",
        ]
    ] = Field(
        default=[
            "torch-bf16",
            "cuda-fp16",
            "onnx-fp32",
            "onnx-int8",
            "openvino-bf16",
            "openvino-int8",
        ],
        description="the serving forms a release of a sentence-transformers model may be served "
        "in (`torch-bf16` needs native bf16, `cuda-fp16` a CUDA device, the `openvino-*` forms "
        "the `openvino` extra and `openvino-bf16` native bf16 too; others are skipped); each "
        "is measured on the release's evaluation data and the fastest that keeps nDCG@10 is "
        "registered as `<name>.<form>@<version>` and builds the release (corpus and queries); "
        "the int8 forms are calibrated on the collection's own texts; `openvino-fp32` (as fast "
        "as `onnx-fp32` here) may be added; "
        "`static` (model2vec, another and much weaker model) may be added; `[]`: the model "
        "itself. See [releases](releases.md#serving-forms)",
    )
    max_ndcg_loss: float = Field(
        default=0.02,
        ge=0,
        le=1,
        description="the policy: the most a form may lose in mean nDCG@10 (relative) on any gate "
        "dataset, even where the loss is not significant (0.02 = 2%)",
    )
    significance: float = Field(
        default=0.05,
        gt=0,
        lt=1,
        description="a form significantly worse than the model on a gate dataset (one-sided "
        "Wilcoxon signed-rank test on per-query nDCG@10, p below this) is refused",
    )
    eval_queries: int = Field(
        default=100,
        ge=5,
        description="each gate dataset's queries the forms are judged on, at most (a sample)",
    )
    eval_documents: int = Field(
        default=300,
        ge=10,
        description="each gate dataset's evaluation corpus for the forms, this many documents: "
        "the judged documents of its sampled queries (a sample where they are more than 3/4 of "
        "it), then other live documents; both sides rank the same corpus",
    )
    speed_documents: int = Field(
        default=16,
        ge=8,
        description="live documents each form and the model encode per timed round; the int8 "
        "forms are calibrated on them too",
    )
    speed_rounds: int = Field(
        default=5,
        ge=2,
        description="timed rounds, interleaved (the order rotates each round): a form counts as "
        "faster only when it was faster than the model in every round",
    )
    torch_free: bool = Field(
        default=False,
        description="search nodes without torch (the light install, the AWS API's serve image): "
        "only onnx, openvino and static forms compete, the fastest passing one serves even where the model "
        "is faster, and a build where none passes fails (the live release stays)",
    )


class RuntimeSettings(_Section):
    """The functions runtime: the durable queue, its workers, and the lake watcher."""

    engine: Literal["local", "processes", "ray"] = Field(
        default="local",
        description="where fan-out tasks (shard embedding) run: `local` threads of the runtime's "
        "process, `processes` (a worker process per core: for an encoder whose work holds the GIL, "
        "as LSA's does) or `ray` tasks",
    )
    ray_address: str = Field(
        default="",
        description='`""` starts a Ray on this machine, `auto` joins a running one, '
        "`ray://head:10001` a remote cluster",
    )
    ray_actor_cpus: int = Field(
        default=1,
        ge=1,
        description="CPUs each Ray actor reserves; Ray gives it as many threads for embedding, "
        "HNSW index builds and UMAP (the release's heavy stages run on the actors too)",
    )
    max_workers: int = Field(
        default=8,
        ge=1,
        description="the most invocations and fan-out tasks the local runtime runs at once",
    )
    idle_seconds: float = Field(
        default=30.0,
        gt=0,
        description="a local worker thread with no work for this many seconds ends (the pool "
        "shrinks when idle); DBOS, launched for durable work (retries, functions that "
        "checkpoint), is shut down after as long without any",
    )
    poll_interval: float = Field(
        default=0.05,
        gt=0,
        description="seconds between looks of a caller waiting for a result (a fan-out's items "
        "recovered after a crash, `embedlake up --until-idle`); the runtime itself does not poll",
    )
    wake_timeout: float = Field(
        default=300.0,
        gt=0,
        description="seconds an idle runtime sleeps before it looks at the outbox unannounced: "
        "work is announced (in-process on SQLite, LISTEN/NOTIFY on PostgreSQL), so this is the "
        "safety net, and the longest wait for an event another process writes to a SQLite "
        "catalog without a file in the watched lake",
    )
    system_database: str = Field(
        default="sqlite:///runtime.db",
        description="DBOS's durable queue and workflow state: a SQLAlchemy URL (relative SQLite "
        "paths resolve against the workspace; a PostgreSQL URL in production)",
    )
    executor_id: str = Field(
        default="",
        description="this worker's identity to the durable queue: at start a worker resumes what "
        "the worker with the same id left unfinished. Stable across restarts, distinct per "
        "worker; empty means `local` on SQLite and the host name on PostgreSQL (several workers "
        "on one host: set `worker-1`, `worker-2`...)",
    )
    watch: bool = Field(
        default=True, description="watch the lake folder for files dropped from outside"
    )
    watch_prefixes: list[str] = Field(
        default=["raw/", "models/"],
        description="lake prefixes the watcher and the start-up scan look at",
    )
    modules: list[str] = Field(
        default=[], description="extra Python modules whose `functions` registry the runtime loads"
    )
    max_recovery_attempts: int = Field(
        default=10,
        ge=1,
        description="crashes an invocation may survive before DBOS stops recovering it",
    )
    retry_base_seconds: float = Field(
        default=1.0,
        gt=0,
        description="first retry delay in seconds; doubles per attempt, with full jitter",
    )


class MapSettings(_Section):
    """The 2D map fitted with every release (`embedlake map` refits one)."""

    method: Literal["umap", "pca"] = Field(
        default="umap",
        description="the 2D map of each release: `umap` (umap-learn on PCA components) or `pca` "
        "(fast)",
    )
    pca_dims: int = Field(
        default=50, ge=2, description="PCA components of the release's reducer that UMAP runs on"
    )
    n_neighbors: int = Field(default=15, ge=2, description="UMAP's neighbourhood size")
    min_dist: float = Field(
        default=0.1, ge=0, description="UMAP's minimum distance between points on the map"
    )
    seed: int = Field(
        default=42, description="seed of the sample and of UMAP (a map is reproducible)"
    )
    fit_sample: int = Field(
        default=50_000,
        ge=10,
        description="UMAP is fitted on at most this many points; the others are placed among "
        "their nearest fitted neighbours",
    )
    place_k: int = Field(
        default=15,
        ge=1,
        description="nearest fitted points a placed point (and a document that arrives later) is "
        "positioned from",
    )
    topic_levels: list[int] = Field(
        default=[8, 32, 128],
        description="clusters of the map labelled with their keywords, coarse to fine: the page "
        "shows the first level zoomed out and finer ones as you zoom in (each capped at one "
        "cluster per `topic_min_size` sampled documents; `[]`: no labels)",
    )
    topic_sample: int = Field(
        default=20_000,
        ge=10,
        description="documents (seeded sample) whose text gives the clusters' keywords: the cap "
        "on the labelling's cost",
    )
    topic_chars: int = Field(
        default=2_000, ge=100, description="characters of each sampled document read for keywords"
    )
    topic_keywords: int = Field(default=3, ge=1, le=10, description="keywords per label")
    topic_min_size: int = Field(
        default=10,
        ge=2,
        description="sampled documents a labelled cluster has at least, on average",
    )


class ApiSettings(_Section):
    """The HTTP API (`embedlake serve`)."""

    auth: Literal["keys", "open"] = Field(
        default="keys",
        description="`keys`: every request needs an API key (`embedlake keys create`); `open`: "
        "no keys, loopback clients only",
    )
    allowed_hosts: list[str] = Field(
        default=[],
        description="host names (no port) a request's `Host` may name besides `localhost`, "
        "`127.0.0.1` and `[::1]`, e.g. the name a reverse proxy forwards; pages of these names "
        "may also change state. Open mode answers only these and the loopback names (against "
        "DNS rebinding); keys mode answers any Host while the list is empty",
    )
    key_pepper: SecretStr | None = Field(
        default=None,
        description="HMAC key mixed into stored key hashes (changing it invalidates every key)",
    )
    key_cache_seconds: float = Field(
        default=2.0,
        ge=0,
        description="a serving process remembers a checked key this many seconds (a revoked key "
        "stops working within it)",
    )
    max_body_bytes: int = Field(
        default=4_000_000, gt=0, description="request bodies larger than this many bytes get 413"
    )
    header_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        description="a request's headers must arrive within this many seconds of its "
        "connection (or of the previous response), or the connection is closed",
    )
    body_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        description="a request's whole body must arrive within this many seconds, or it gets 408 "
        "and its connection is closed (a client that sends slowly holds no connection forever)",
    )
    max_connections: int = Field(
        default=1000,
        gt=0,
        description="connections and requests one serving process holds at once; more get 503 "
        "(uvicorn's `limit_concurrency`)",
    )
    max_texts: int = Field(
        default=256,
        gt=0,
        description="texts per `/v1/embed` request and documents per `POST /v1/documents`",
    )
    max_passages: int = Field(
        default=1024,
        gt=0,
        description='passages per `/v1/embed` request with `"long": "pool"` (a text over the '
        "encoder's window counts each of its passages; checked before any is embedded)",
    )
    max_text_chars: int = Field(default=20_000, gt=0, description="characters per text or query")
    max_k: int = Field(
        default=1000,
        ge=1,
        le=1000,
        description="results per search (`k`) at most; 1,000 is the searcher's own ceiling",
    )
    max_filter_keys: int = Field(
        default=16, gt=0, le=256, description="fields per search `filter` (256 at most)"
    )
    max_filter_values: int = Field(
        default=1000, gt=0, description="values in one field's list of a search `filter`"
    )
    max_filter_values_total: int = Field(
        default=4000, gt=0, description="values of all the fields of a search `filter` together"
    )
    max_filter_value_chars: int = Field(
        default=1000, gt=0, description="characters per field name or value of a search `filter`"
    )
    max_json_depth: int = Field(
        default=64,
        gt=0,
        description="nesting of objects and arrays in a request body (checked before it is parsed)",
    )
    batch_wait_ms: float = Field(
        default=5.0,
        ge=0,
        description="dynamic batching of `/v1/embed` and text searches: under concurrent load "
        "(the last batch had several requests), the longest a text waits, in milliseconds, for "
        "others to be embedded with; a lone client never waits",
    )
    max_batch: int = Field(
        default=64, gt=0, description="dynamic batching: texts embedded together at most"
    )
    reload_seconds: float = Field(
        default=30.0,
        gt=0,
        description="the longest, in seconds, a serving process goes without looking for alias "
        "moves (hot swap): moves and rebuilt indexes are announced (in-process, LISTEN/NOTIFY on "
        "PostgreSQL, the SQLite catalog's files watched) and served at once, so this only bounds "
        "a missed announcement",
    )
    summary_cache: int = Field(
        default=50_000,
        ge=0,
        description="titles and snippets of search results each serving process keeps in memory, "
        "at most this many documents' (about 1 KB each; least recently shown dropped first); any "
        "change committed to a SQLite catalog empties it, so a deleted document never shows. "
        "`0`, or a PostgreSQL catalog: read from the catalog on every search",
    )
    max_loaded: int = Field(
        default=3,
        ge=1,
        description="releases asked for by id kept loaded, besides those the followed aliases hold",
    )
