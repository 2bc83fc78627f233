"""The functions a runtime serves: the built-in pipeline, those of the modules named in settings,
and any given.
"""

from __future__ import annotations

import importlib

from embedlake.errors import ConfigError
from embedlake.functions import Functions
from embedlake.workspace import Workspace


def load_functions(ws: Workspace, extra: Functions | None = None) -> Functions:
    """The built-in functions, those of the modules named in settings, and ``extra``."""
    from embedlake.functions.builtin import functions as builtin
    from embedlake.functions.builtin import scheduled_retraining

    merged = builtin.merge(scheduled_retraining(ws))
    for name in ws.settings.runtime.modules:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            raise ConfigError(f"runtime.modules: cannot import {name!r}: {exc}") from None
        registry = getattr(module, "functions", None)
        if not isinstance(registry, Functions):
            raise ConfigError(f"runtime.modules: {name!r} has no `functions` registry")
        merged = merged.merge(registry)
    return merged.merge(extra) if extra is not None else merged
