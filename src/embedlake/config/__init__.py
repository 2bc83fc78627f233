"""Settings: environment ``EMBEDLAKE_*`` > ``embedlake.toml`` > defaults.

Read once, at entry points (the CLI, the API factory, the worker, the AWS handlers), and passed down
as a typed object. ``sections`` describes every setting once; ``settings`` loads them; ``docs``
writes the default ``embedlake.toml`` and docs/settings.md from the descriptions.
"""

from embedlake.config.docs import default_toml, settings_markdown
from embedlake.config.sections import (
    ApiSettings,
    CatalogSettings,
    EmbedSettings,
    GateSettings,
    IndexSettings,
    IngestSettings,
    LakeSettings,
    MapSettings,
    PassagesSettings,
    ReduceSettings,
    ReleaseSettings,
    RuntimeSettings,
    ServingSettings,
    TrainingSettings,
)
from embedlake.config.settings import CONFIG_FILE, NOT_SETTINGS, Settings

__all__ = [
    "CONFIG_FILE",
    "NOT_SETTINGS",
    "ApiSettings",
    "CatalogSettings",
    "EmbedSettings",
    "GateSettings",
    "IndexSettings",
    "IngestSettings",
    "LakeSettings",
    "MapSettings",
    "PassagesSettings",
    "ReduceSettings",
    "ReleaseSettings",
    "RuntimeSettings",
    "ServingSettings",
    "Settings",
    "TrainingSettings",
    "default_toml",
    "settings_markdown",
]
