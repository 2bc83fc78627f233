"""What recovery reads from the lake, table by table, before anything is written."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table


@dataclass
class Rows:
    """Rows per table, read from the lake before anything is written."""

    tables: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    models: dict[str, tuple[int, str]] = field(default_factory=dict)  # ref → (id, content hash)
    lost: list[str] = field(default_factory=list)

    def add(self, table: Table, row: dict[str, Any]) -> None:
        self.tables[table.name].append(row)
