"""Settings: environment ``EMBEDLAKE_*`` > ``embedlake.toml`` > defaults.

Read once, at entry points (the CLI, later the API factory and the worker), and passed down as a typed
object. Nested fields use a double underscore in the environment: ``EMBEDLAKE_INDEX__EF_SEARCH=128``.
Relative paths and URLs are resolved against the workspace folder, so a workspace can be moved.
"""

from __future__ import annotations

import json
import os
import socket
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from embedlake.errors import ConfigError

CONFIG_FILE = "embedlake.toml"
_ENV_PREFIX = "EMBEDLAKE_"
# EMBEDLAKE_* names that are not settings: the AWS wiring (see embedlake.aws.container) and the
# benchmarks' and tests' data folders. Every other EMBEDLAKE_* name must be a setting.
NOT_SETTINGS = ("EMBEDLAKE_AWS_", "EMBEDLAKE_WORKSPACE_DIR", "EMBEDLAKE_BENCH_", "EMBEDLAKE_TEST_")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LakeSettings(_Section):
    # A path (relative to the workspace), file:///data/lake, or s3://bucket/prefix.
    url: str = "lake"
    # S3 and S3-compatible stores (MinIO, Ceph...). Empty credentials: boto's own chain (instance
    # role, ~/.aws, AWS_* variables), which is what production on AWS should use.
    endpoint_url: str = ""
    region: str = ""
    access_key_id: str = ""
    secret_access_key: SecretStr | None = None  # via EMBEDLAKE_LAKE__SECRET_ACCESS_KEY(_FILE)
    multipart_mb: int = Field(default=64, ge=5)  # larger objects are uploaded in parts this size
    # How the runtime learns of objects written by others on a remote lake: "scan" lists the
    # watched prefixes every scan_seconds; "sqs" reads the bucket's notifications from queue_url
    # (and still scans, less often, as the safety net).
    events: Literal["scan", "sqs"] = "scan"
    queue_url: str = ""
    scan_seconds: float = Field(default=5.0, gt=0)


class CatalogSettings(_Section):
    url: str = "sqlite:///catalog.db"
    # Kept out of the URL so that it is never printed; read from env or a *_FILE secret.
    password: SecretStr | None = None


class IngestSettings(_Section):
    max_document_bytes: int = Field(default=1_000_000, gt=0)
    batch_size: int = Field(default=2_000, gt=0)


class EmbedSettings(_Section):
    # The model the runtime embeds new documents with while no model has an index yet.
    model: str = "minilm"
    batch_size: int = Field(default=32, gt=0)
    shard_size: int = Field(default=2_048, gt=0)
    device: str = "auto"
    max_seq_length: int = Field(default=256, gt=0)
    lsa_components: int = Field(default=256, gt=1)


class IndexSettings(_Section):
    # hnsw/exact: index files in the lake, loaded into each serving process; pgvector: vectors
    # and HNSW index in the PostgreSQL catalog (needs a postgresql catalog url)
    engine: Literal["hnsw", "exact", "pgvector"] = "hnsw"
    m: int = Field(default=32, ge=4)
    ef_construction: int = Field(default=200, ge=8)
    ef_search: int = Field(default=128, ge=1)
    # exact engine: scan int8 (a byte a dimension) or binary (a bit) codes held in memory instead of
    # the fp32 vectors, which stay memory-mapped; then re-score the best k × rescore candidates with
    # their fp32 vectors (0: the codes' approximate scores). rescore also applies at load.
    quantization: Literal["none", "int8", "binary"] = "none"
    rescore: int = Field(default=10, ge=0)


class GateSettings(_Section):
    # The alias a new release is compared with and moved to when it passes.
    alias: str = "production"
    max_ndcg_drop: float = Field(default=0.005, ge=0)
    min_ann_recall: float = Field(default=0.95, ge=0, le=1)
    # Registered benchmark datasets the gate evaluates on (empty: every registered one).
    datasets: list[str] = []


class ReduceSettings(_Section):
    variance: float = Field(default=0.95, gt=0, le=1)
    components: int = Field(default=0, ge=0)  # a fixed number instead of a variance share
    # index the reduced vectors instead of the full ones (queries are reduced the same way)
    back_index: bool = False


class TrainingSettings(_Section):
    """ "Repeat": retrain by rule or schedule. Off while ``kind`` is empty."""

    kind: Literal["", "lsa", "sentence-transformers"] = ""
    base: str = "minilm"
    pairs: str = "self:title"
    name: str = "auto"
    # retrain when the live corpus has grown by this share since the production release (0: never)
    grow: float = Field(default=0.2, ge=0)
    schedule: str = ""  # a cron expression, e.g. "0 3 * * 0" (empty: never)


class ReleaseSettings(_Section):
    # Releases an alias points to, or pointed to in its last `keep_moves` moves, are never removed.
    keep_moves: int = Field(default=5, ge=1)


class ServingSettings(_Section):
    """The serving form a release's sentence-transformers model is served in (its corpus vectors and
    its queries both): the fastest of ``forms`` whose nDCG@10 on the gate datasets stays within
    ``max_ndcg_loss`` (relative) of the model itself; none passing: the model itself."""

    # torch-bf16 (CPUs with native bf16), cuda-fp16 (a CUDA device), onnx-fp32, onnx-int8, static;
    # forms this machine cannot run are skipped. Empty: always the model itself.
    forms: list[Literal["torch-bf16", "cuda-fp16", "onnx-fp32", "onnx-int8", "static"]] = [
        "torch-bf16",
        "cuda-fp16",
        "onnx-fp32",
        "onnx-int8",
    ]
    max_ndcg_loss: float = Field(default=0.005, ge=0, le=1)
    # the evaluation corpus per gate dataset: its judged documents, then other live ones up to this
    eval_documents: int = Field(default=2_000, ge=10)
    speed_documents: int = Field(default=256, ge=8)  # live documents each form's speed is timed on
    # Search nodes without torch (the light install; the AWS API's serve image): only the onnx and
    # static forms compete, the fastest passing one serves even where the model is faster, and a
    # build where none passes fails (the live release stays) instead of serving the torch model.
    torch_free: bool = False


class RuntimeSettings(_Section):
    engine: Literal["local", "ray"] = "local"
    # "" starts a Ray on this machine; "auto" joins a running one; "ray://head:10001" a remote one.
    ray_address: str = ""
    # CPUs each Ray actor reserves (its threads for embedding, HNSW builds and UMAP)
    ray_actor_cpus: int = Field(default=1, ge=1)
    max_workers: int = Field(default=8, ge=1)
    idle_seconds: float = Field(default=30.0, gt=0)
    poll_interval: float = Field(default=0.05, gt=0)
    system_database: str = "sqlite:///runtime.db"
    # Who this worker is to the durable queue: at start a worker resumes the invocations that
    # the worker with its id left unfinished. Stable across restarts, distinct per worker. Empty:
    # "local" on SQLite (one machine), the host name on PostgreSQL; several workers on one host
    # each need their own (worker-1, worker-2...).
    executor_id: str = ""
    watch: bool = True
    watch_prefixes: list[str] = ["raw/", "models/"]
    modules: list[str] = []
    max_recovery_attempts: int = Field(default=10, ge=1)
    retry_base_seconds: float = Field(default=1.0, gt=0)


class MapSettings(_Section):
    """The 2D map fitted with every release (`embedlake map` refits one)."""

    method: Literal["umap", "pca"] = "umap"
    pca_dims: int = Field(default=50, ge=2)  # UMAP runs on this many PCA components
    n_neighbors: int = Field(default=15, ge=2)
    min_dist: float = Field(default=0.1, ge=0)
    seed: int = 42
    fit_sample: int = Field(default=50_000, ge=10)  # fitted on at most this many; the rest placed
    place_k: int = Field(default=15, ge=1)  # neighbours a placed point's position comes from


class ApiSettings(_Section):
    # "keys": every request needs an API key; "open": no keys, and only loopback clients are served.
    auth: Literal["keys", "open"] = "keys"
    # HMAC key mixed into stored key hashes (a secret: set it via EMBEDLAKE_API__KEY_PEPPER_FILE).
    key_pepper: SecretStr | None = None
    key_cache_seconds: float = Field(default=2.0, ge=0)  # a revoked key stops working within this
    max_body_bytes: int = Field(default=4_000_000, gt=0)
    max_texts: int = Field(default=256, gt=0)
    max_text_chars: int = Field(default=20_000, gt=0)
    # dynamic batching of /v1/embed and text searches: wait at most this long for company
    batch_wait_ms: float = Field(default=5.0, ge=0)
    max_batch: int = Field(default=64, gt=0)
    reload_seconds: float = Field(default=1.0, gt=0)  # how often to look for alias moves
    max_loaded: int = Field(default=3, ge=1)  # releases kept in memory besides those aliases hold


class Settings(BaseModel):
    """All settings of one workspace."""

    model_config = ConfigDict(extra="forbid")

    workspace: Path = Path(".")
    lake: LakeSettings = LakeSettings()
    catalog: CatalogSettings = CatalogSettings()
    ingest: IngestSettings = IngestSettings()
    embed: EmbedSettings = EmbedSettings()
    index: IndexSettings = IndexSettings()
    runtime: RuntimeSettings = RuntimeSettings()
    gate: GateSettings = GateSettings()
    reduce: ReduceSettings = ReduceSettings()
    releases: ReleaseSettings = ReleaseSettings()
    serving: ServingSettings = ServingSettings()
    training: TrainingSettings = TrainingSettings()
    map: MapSettings = MapSettings()
    api: ApiSettings = ApiSettings()

    @classmethod
    def load(cls, workspace: Path, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings of ``workspace``: environment over its ``embedlake.toml`` over defaults."""
        workspace = workspace.resolve()
        path = workspace / CONFIG_FILE
        if not path.is_file():
            raise ConfigError(
                f"{workspace} is not an embedlake workspace (no {CONFIG_FILE}); "
                f"run `embedlake init {workspace}` first"
            )
        try:
            data: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
        _merge(data, _from_environment(os.environ if environ is None else environ))
        data["workspace"] = workspace
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(
                f"invalid settings in {path} or EMBEDLAKE_* environment: {_summarise(exc)}"
            ) from None

    def resolve(self, location: str) -> str:
        """A lake or catalog location made absolute against the workspace (URLs pass through)."""
        if "://" in location:
            return location
        return str((self.workspace / location).resolve())

    def executor_id(self) -> str:
        """This worker's identity to the durable queue (see ``runtime.executor_id``)."""
        if self.runtime.executor_id:
            return self.runtime.executor_id
        if self.runtime_database_url().startswith("sqlite"):
            return "local"
        return socket.gethostname()

    def runtime_database_url(self) -> str:
        """The functions runtime's durable queue (a SQLite file beside the catalog by default)."""
        url = self.runtime.system_database
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/"):
            return prefix + str((self.workspace / url[len(prefix) :]).resolve())
        return url

    def catalog_url(self) -> str:
        """The SQLAlchemy URL of the catalog, with relative SQLite paths resolved."""
        url = self.catalog.url
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/"):
            return prefix + str((self.workspace / url[len(prefix) :]).resolve())
        return url


def _from_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    """``EMBEDLAKE_INDEX__EF_SEARCH=64`` → ``{"index": {"ef_search": "64"}}``.

    ``EMBEDLAKE_X_FILE=/run/secrets/x`` sets ``x`` from the file's content (the Docker and
    Kubernetes secrets convention), so secrets need not sit in the environment or the toml. A
    value in brackets is read as a JSON list (``EMBEDLAKE_RUNTIME__MODULES='["my.fns"]'``).
    """
    out: dict[str, Any] = {}
    for key, value in environ.items():
        if not key.startswith(_ENV_PREFIX) or key.startswith(NOT_SETTINGS):
            continue
        name = key[len(_ENV_PREFIX) :].lower()
        if name.endswith("_file"):
            name = name[: -len("_file")]
            try:
                value = Path(value).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(f"{key}: cannot read secret file: {exc.strerror}") from None
        node = out
        *parents, leaf = name.split("__")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = _json_list(key, value) if value.lstrip().startswith("[") else value
    return out


def _json_list(key: str, value: str) -> list[Any]:
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{key}: not a JSON list: {exc}") from None
    if not isinstance(parsed, list):
        raise ConfigError(f"{key}: not a JSON list")
    return parsed


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> None:
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


def _summarise(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"])
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


def default_toml() -> str:
    """The commented ``embedlake.toml`` that ``embedlake init`` writes."""
    s = Settings()
    return f"""# embedlake workspace settings. Environment variables EMBEDLAKE_SECTION__KEY override these.

[lake]
url = "{s.lake.url}"                  # a folder (relative to this file), file:///path or s3://bucket/prefix
endpoint_url = "{s.lake.endpoint_url}"             # S3-compatible endpoint (MinIO...); empty = AWS
region = "{s.lake.region}"
access_key_id = "{s.lake.access_key_id}"  # empty: boto's chain; EMBEDLAKE_LAKE__SECRET_ACCESS_KEY(_FILE)
multipart_mb = {s.lake.multipart_mb}               # S3 objects above this are uploaded in parts
events = "{s.lake.events}"                # scan | sqs: how a remote lake's new objects are noticed
queue_url = "{s.lake.queue_url}"                 # the SQS queue receiving the bucket's notifications
scan_seconds = {s.lake.scan_seconds}            # listing interval (the safety net with sqs)

[catalog]
url = "{s.catalog.url}"  # any SQLAlchemy URL; password via EMBEDLAKE_CATALOG__PASSWORD(_FILE)

[ingest]
max_document_bytes = {s.ingest.max_document_bytes}
batch_size = {s.ingest.batch_size}

[embed]
model = "{s.embed.model}"              # embedded by the runtime until a model has an index
batch_size = {s.embed.batch_size}
shard_size = {s.embed.shard_size}
device = "{s.embed.device}"                # auto | cpu | cuda
max_seq_length = {s.embed.max_seq_length}
lsa_components = {s.embed.lsa_components}

[index]
engine = "{s.index.engine}"              # hnsw | exact | pgvector (needs a PostgreSQL catalog)
m = {s.index.m}
ef_construction = {s.index.ef_construction}
ef_search = {s.index.ef_search}
quantization = "{s.index.quantization}"        # exact engine: none | int8 | binary codes in memory
rescore = {s.index.rescore}                     # re-score k × rescore candidates with fp32 (0 = off)

[runtime]
engine = "{s.runtime.engine}"             # local | ray
ray_actor_cpus = {s.runtime.ray_actor_cpus}             # CPUs (threads) each Ray actor reserves
ray_address = "{s.runtime.ray_address}"              # "" = a Ray on this machine, "auto", or "ray://head:10001"
max_workers = {s.runtime.max_workers}
idle_seconds = {s.runtime.idle_seconds}            # an idle local worker thread ends after this
poll_interval = {s.runtime.poll_interval}
system_database = "{s.runtime.system_database}"
executor_id = "{s.runtime.executor_id}"                # stable and distinct per worker (empty: host name)
watch = {str(s.runtime.watch).lower()}
watch_prefixes = {json.dumps(s.runtime.watch_prefixes)}
modules = {json.dumps(s.runtime.modules)}              # modules with a `functions` registry of your own
max_recovery_attempts = {s.runtime.max_recovery_attempts}
retry_base_seconds = {s.runtime.retry_base_seconds}

[gate]
alias = "{s.gate.alias}"
max_ndcg_drop = {s.gate.max_ndcg_drop}         # per dataset, against the release behind the alias
min_ann_recall = {s.gate.min_ann_recall}
datasets = {json.dumps(s.gate.datasets)}              # registered datasets; empty = all

[reduce]
variance = {s.reduce.variance}              # PCA keeps this share of the variance
components = {s.reduce.components}              # or a fixed number of components (0 = by variance)
back_index = {str(s.reduce.back_index).lower()}      # index the reduced vectors instead of the full ones

[releases]
keep_moves = {s.releases.keep_moves}              # never remove a release an alias held in its last N moves

[serving]                   # the form a release serves a sentence-transformers model in
forms = {json.dumps(s.serving.forms)}
max_ndcg_loss = {s.serving.max_ndcg_loss}         # relative nDCG@10 loss a form may cost (gate datasets)
eval_documents = {s.serving.eval_documents}            # evaluation corpus per gate dataset (judged first)
speed_documents = {s.serving.speed_documents}            # live documents each form is timed on
torch_free = {str(s.serving.torch_free).lower()}      # only onnx/static forms serve (nodes without torch)

[training]                  # "repeat": retrain by rule or schedule (off while kind is empty)
kind = "{s.training.kind}"                   # lsa | sentence-transformers
base = "{s.training.base}"
pairs = "{s.training.pairs}"
name = "{s.training.name}"
grow = {s.training.grow}                  # retrain once the corpus grew by this share since production
schedule = "{s.training.schedule}"               # or on a cron schedule, e.g. "0 3 * * 0"

[map]                       # the 2D map fitted with every release
method = "{s.map.method}"               # umap | pca
pca_dims = {s.map.pca_dims}                 # UMAP runs on this many PCA components
n_neighbors = {s.map.n_neighbors}
min_dist = {s.map.min_dist}
seed = {s.map.seed}
fit_sample = {s.map.fit_sample}            # fitted on at most this many points; the rest are placed
place_k = {s.map.place_k}                  # nearest fitted points a placed point is put among

[api]                       # `embedlake serve`; key_pepper via EMBEDLAKE_API__KEY_PEPPER(_FILE)
auth = "{s.api.auth}"                # keys | open (open: no keys, loopback clients only)
key_cache_seconds = {s.api.key_cache_seconds}
max_body_bytes = {s.api.max_body_bytes}
max_texts = {s.api.max_texts}                # per /v1/embed request
max_text_chars = {s.api.max_text_chars}
batch_wait_ms = {s.api.batch_wait_ms}             # dynamic batching: longest wait for company
max_batch = {s.api.max_batch}
reload_seconds = {s.api.reload_seconds}          # how often serving processes look for alias moves
max_loaded = {s.api.max_loaded}                # releases kept loaded besides those aliases hold
"""
