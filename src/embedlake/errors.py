"""The one exception tree of embedlake.

Every error that embedlake raises on purpose is an ``EmbedlakeError``. Callers (the CLI today, the
HTTP API later) map the branches to exit codes or status codes in one place; library code raises and
never chooses a code itself::

    EmbedlakeError
    ├── ConfigError            settings or workspace are missing or invalid
    ├── InputError             the user's input is wrong (a file, a flag, a query, a vector)
    │   └── RejectedInput      a document or row failed validation (carries file, line and reason)
    ├── NotFound               a document, model, index, dataset or object does not exist
    ├── ModelMismatch          vectors or an index of one model met another model
    ├── Conflict               the request contradicts stored state (e.g. a version already exists)
    └── BackendError           a storage engine failed (lake, catalog, index library)
        ├── LakeError
        └── CatalogError

Third-party exceptions are translated at the boundary of the module that calls the library, so that
nothing above a backend needs to know which library raised.
"""

from __future__ import annotations


class EmbedlakeError(Exception):
    """Base of every error embedlake raises on purpose."""


class ConfigError(EmbedlakeError):
    """Settings or the workspace are missing or invalid."""


class InputError(EmbedlakeError):
    """The caller's input is wrong; the message names what and where."""


class RejectedInput(InputError):
    """One record of an input file failed validation."""

    def __init__(self, reason: str, *, file: str | None = None, line: int | None = None) -> None:
        self.reason = reason
        self.file = file
        self.line = line
        where = ""
        if file is not None:
            where = f"{file}:{line}: " if line is not None else f"{file}: "
        super().__init__(f"{where}{reason}")


class NotFound(EmbedlakeError):
    """A named thing does not exist."""


class ModelMismatch(EmbedlakeError):
    """Vectors or an index of one model were used with another model."""


class Conflict(EmbedlakeError):
    """The request contradicts stored state."""


class BackendError(EmbedlakeError):
    """A storage engine or library failed."""


class LakeError(BackendError):
    """The object store failed."""


class CatalogError(BackendError):
    """The catalog database failed."""
