"""Benchmark datasets (evaluation sets registered for the gate) and benchmark results."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select

from embedlake.catalog import journal
from embedlake.catalog.database import Database
from embedlake.catalog.schema import benchmark_results, datasets
from embedlake.errors import NotFound


@dataclass(frozen=True)
class DatasetRecord:
    name: str
    prefix: str
    n_queries: int
    n_judgments: int


class Benchmarks:
    def __init__(self, catalog: Database) -> None:
        self._catalog = catalog

    def put_dataset(self, name: str, prefix: str, n_queries: int, n_judgments: int) -> None:
        insert = self._catalog.insert
        stmt = insert(datasets).values(
            name=name,
            prefix=prefix,
            n_queries=n_queries,
            n_judgments=n_judgments,
            created_at=datetime.now(UTC),
        )
        with self._catalog.begin() as conn:
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=["name"],
                    set_=dict(
                        prefix=stmt.excluded.prefix,
                        n_queries=stmt.excluded.n_queries,
                        n_judgments=stmt.excluded.n_judgments,
                    ),
                )
            )

    def dataset(self, name: str) -> DatasetRecord:
        with self._catalog.connect() as conn:
            row = conn.execute(select(datasets).where(datasets.c.name == name)).first()
        if row is None:
            raise NotFound(f"benchmark dataset {name!r} is not registered")
        return DatasetRecord(row.name, row.prefix, row.n_queries, row.n_judgments)

    def list_datasets(self) -> list[DatasetRecord]:
        with self._catalog.connect() as conn:
            return [
                DatasetRecord(r.name, r.prefix, r.n_queries, r.n_judgments)
                for r in conn.execute(select(datasets).order_by(datasets.c.name))
            ]

    def add_result(
        self,
        *,
        dataset: str,
        system: str,
        metrics: dict[str, float],
        model_id: int | None = None,
        index_id: int | None = None,
    ) -> None:
        row = dict(
            dataset=dataset,
            system=system,
            index_id=index_id,
            metrics=metrics,
            created_at=datetime.now(UTC),
        )
        with self._catalog.begin() as conn:
            key = conn.execute(
                benchmark_results.insert().values(model_id=model_id, **row)
            ).inserted_primary_key
            assert key is not None
            model = journal.model_ref(conn, model_id)
            self._catalog.journal(journal.result_key(key[0]), {"id": key[0], "model": model, **row})
