"""Batch inference on every core: a run's shards embedded by worker processes.

An encoder whose work runs on one core (LSA: its tokenising is Python, its sparse product one
thread) leaves the other cores idle while a large collection is embedded; threads would not help,
since the tokenising holds the GIL. So ``embed`` hands such a run's shards to a pool of processes.
Each opens the workspace from the driver's settings and loads the model once (the per-process
cache of :mod:`embedlake.models.artifacts`), then runs the same task the functions runtime fans
out (:func:`embed_shard_task`): every shard is still one Parquet object plus one catalog
transaction, so a killed run resumes from its plan as before, whichever process wrote what.

Encoders that use every core already (torch, ONNX Runtime) stay in one process: a second would
only compete for the same cores and hold a second copy of the model.
"""

from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Literal

from embedlake.config import Settings
from embedlake.embeddings.shards import embed_shard_task
from embedlake.encoders import Encoder
from embedlake.machine import cores
from embedlake.workspace import Workspace

log = logging.getLogger(__name__)

ONE_CORE_KINDS = frozenset({"lsa"})  # encoders whose encode() keeps one core busy, not all
# A worker process takes seconds to start (imports, the workspace, the model: ~6 s for an LSA
# of 150,000 terms) and LSA embeds ~5,000 documents a second on one core: below this many
# documents a second process costs more than it saves.
WORTH_DOCUMENTS = 50_000

_ws: Workspace | None = None  # the worker process's workspace, opened at its first shard


def processes_for(
    setting: Literal["auto"] | int, encoder: Encoder, shards: int, documents: int
) -> int:
    """How many processes embed ``documents`` documents in ``shards`` shards: ``[embed]
    processes``, where ``auto`` is one per core for an encoder that computes on one core and a
    run large enough to repay starting them; never more than there are shards."""
    if setting == "auto":
        worth = encoder.kind in ONE_CORE_KINDS and documents >= WORTH_DOCUMENTS
        setting = cores() if worth else 1
    return max(1, min(setting, shards))


def _run(settings: Settings, item: tuple[str, int, int]) -> int:
    # Opened at the first shard rather than in a pool initializer: an error opening the
    # workspace then reaches the driver as itself, not as a broken pool.
    global _ws
    if _ws is None:
        _ws = Workspace.from_settings(settings)
    return embed_shard_task(_ws, item)


def embed_shards(
    settings: Settings, model_ref: str, run_id: int, numbers: Sequence[int], processes: int
) -> Iterator[tuple[int, int]]:
    """Embed the shards ``numbers`` of run ``run_id`` in ``processes`` worker processes; yields
    (shard number, documents embedded) as each finishes. The first error stops the others'
    queue (shards already running finish and stay recorded) and is raised here."""
    # spawn, not fork: the driver holds threads (the catalog's pool, a progress bar) and open
    # connections that a forked child would inherit in whatever state they were in
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(processes, mp_context=context) as pool:
        running: dict[Future[int], int] = {
            pool.submit(_run, settings, (model_ref, run_id, n)): n for n in numbers
        }
        try:
            while running:
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    number = running.pop(future)
                    yield number, future.result()
        finally:
            for future in running:  # an error, or a caller that stopped early
                future.cancel()
    log.info("embedded %d shards in %d processes", len(numbers), processes)
