"""The one exception tree of embedlake.

Every error that embedlake raises on purpose is an ``EmbedlakeError``. Callers (the CLI in
``cli/app.py``, the HTTP API in ``api/problems.py``) map the branches to exit codes or status codes in
one place each; library code raises and never chooses a code itself::

    EmbedlakeError
    ├── ConfigError            settings or workspace are missing or invalid
    ├── InputError             the user's input is wrong (a file, a flag, a query, a vector)
    │   ├── RejectedInput      a document or row failed validation (carries file, line and reason)
    │   └── TooLarge           a request body or batch over the configured limit
    ├── AccessDenied           (API) the request may not do this
    │   ├── Unauthenticated    no API key, or not a valid one
    │   └── Forbidden          a valid key without the scope the route needs
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


class TooLarge(InputError):
    """A request body or batch is over the configured limit."""


class TimedOut(InputError):
    """A request's body did not arrive within its time limit."""


class AccessDenied(EmbedlakeError):
    """The API request may not do this."""


class Unauthenticated(AccessDenied):
    """No API key, or not a valid (live) one."""


class Forbidden(AccessDenied):
    """A valid API key without the scope the route needs."""


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
