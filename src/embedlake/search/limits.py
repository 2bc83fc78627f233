"""What one search may ask for, checked before any work starts: ``k``, the query's length and the
size of its filter. The API and ``embedlake search`` check the same ``[api]`` limits, and each
refusal names the limit and its setting, so a user knows what to change or ask for.

(A filter of 100,000 values once cost a server minutes of CPU and gigabytes of memory; the catalog
now binds a list as one parameter, and these limits bound what even that may cost.)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from embedlake.catalog.documents import check_filter_field
from embedlake.config import ApiSettings
from embedlake.errors import TooLarge


def check_search(
    api: ApiSettings, *, k: int, query: str | None = None, where: Mapping[str, Any] | None = None
) -> None:
    """Refuse (``TooLarge``) a search over any of ``api``'s limits."""
    if k > api.max_k:
        said = f"{k:,}" if k < 10**15 else f"a {len(str(k)):,}-digit number"
        raise TooLarge(f"k is {said}; the limit is {api.max_k:,} (api.max_k)")
    if query is not None and len(query) > api.max_text_chars:
        raise TooLarge(
            f"query has {len(query):,} characters; the limit is {api.max_text_chars:,} "
            "(api.max_text_chars)"
        )
    if where is not None:
        check_filter(api, where)


def check_filter(api: ApiSettings, where: Mapping[str, Any]) -> None:
    """Fields, values per field, values in all and characters per name or value; then names and
    values the catalog cannot match exactly (``InputError``)."""
    if len(where) > api.max_filter_keys:
        raise TooLarge(
            f"the filter has {len(where):,} fields; the limit is {api.max_filter_keys:,} "
            "(api.max_filter_keys)"
        )
    total = 0
    for key, wanted in where.items():
        values = wanted if isinstance(wanted, list) else [wanted]
        if len(values) > api.max_filter_values:
            raise TooLarge(
                f"filter {_short(key)} has {len(values):,} values; the limit is "
                f"{api.max_filter_values:,} (api.max_filter_values)"
            )
        total += len(values)
        longest = max((v for v in (key, *values) if isinstance(v, str)), key=len)
        if len(longest) > api.max_filter_value_chars:
            raise TooLarge(
                f"filter {_short(key)}: a name or value has {len(longest):,} characters; the "
                f"limit is {api.max_filter_value_chars:,} (api.max_filter_value_chars)"
            )
    if total > api.max_filter_values_total:
        raise TooLarge(
            f"the filter has {total:,} values in all; the limit is "
            f"{api.max_filter_values_total:,} (api.max_filter_values_total)"
        )
    for key, wanted in where.items():
        check_filter_field(key, wanted if isinstance(wanted, list) else [wanted])


def _short(key: str) -> str:
    """A field name fit for a message: a name over the limit is shown by its start."""
    return repr(key if len(key) <= 64 else key[:64] + "…")
