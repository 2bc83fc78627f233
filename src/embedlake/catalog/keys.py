"""API keys: created once (the plain key is shown once), stored as an HMAC, revoked by id.

A key reads ``elk_<key_id>_<secret>``. The id finds the row; the HMAC-SHA256 of the whole key under
the pepper (a server secret, never in the database) is compared in constant time. Keys carry 256
random bits, so a fast hash is enough: there is nothing to brute-force, unlike a password.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update

from embedlake.catalog.database import Database
from embedlake.catalog.schema import api_keys
from embedlake.errors import InputError, NotFound

# admin implies every other scope
SCOPES = ("search", "embed", "write", "admin")
_PREFIX = "elk_"
NAME_MAX = 200  # characters of a key's name (what it is for)


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    name: str
    scopes: tuple[str, ...]
    created_at: datetime
    revoked_at: datetime | None

    def allows(self, scope: str) -> bool:
        return self.revoked_at is None and (scope in self.scopes or "admin" in self.scopes)


def _key(row: Any) -> ApiKey:
    return ApiKey(row.key_id, row.name, tuple(row.scopes), row.created_at, row.revoked_at)


def _digest(pepper: bytes, key: str) -> str:
    return hmac.new(pepper, key.encode(), hashlib.sha256).hexdigest()


class Keys:
    def __init__(self, catalog: Database) -> None:
        self._catalog = catalog

    def create(
        self, scopes: list[str], name: str = "", *, pepper: bytes = b""
    ) -> tuple[str, ApiKey]:
        """A new key; returns the plain key (shown once, never stored) and its record."""
        unknown = sorted(set(scopes) - set(SCOPES))
        if not scopes or unknown:
            raise InputError(
                f"unknown scope {', '.join(unknown)!r} (known: {', '.join(SCOPES)})"
                if unknown
                else f"a key needs at least one scope ({', '.join(SCOPES)})"
            )
        if len(name) > NAME_MAX or not name.isprintable():  # listed by `embedlake keys list`
            raise InputError(
                f"a key's name has at most {NAME_MAX} printable characters (no control "
                f"characters): got {len(name):,} characters"
            )
        key_id = secrets.token_hex(6)
        plain = f"{_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
        with self._catalog.begin() as conn:
            conn.execute(
                api_keys.insert().values(
                    key_id=key_id,
                    name=name,
                    scopes=sorted(set(scopes), key=SCOPES.index),
                    hash=_digest(pepper, plain),
                    created_at=datetime.now(UTC),
                )
            )
        return plain, self.get(key_id)

    def get(self, key_id: str) -> ApiKey:
        with self._catalog.connect() as conn:
            row = conn.execute(select(api_keys).where(api_keys.c.key_id == key_id)).first()
        if row is None:
            raise NotFound(f"API key {key_id!r} does not exist")
        return _key(row)

    def all(self) -> list[ApiKey]:
        with self._catalog.connect() as conn:
            rows = conn.execute(select(api_keys).order_by(api_keys.c.created_at)).all()
        return [_key(r) for r in rows]

    def revoke(self, key_id: str) -> ApiKey:
        with self._catalog.begin() as conn:
            done = conn.execute(
                update(api_keys)
                .where(api_keys.c.key_id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=datetime.now(UTC))
            )
        if done.rowcount == 0:
            self.get(key_id)  # NotFound for an unknown id
            raise InputError(f"API key {key_id!r} is revoked already")
        return self.get(key_id)

    def verify(self, plain: str, *, pepper: bytes = b"") -> ApiKey | None:
        """The live key ``plain`` is, or None (unknown, malformed, wrong secret or revoked)."""
        if not plain.startswith(_PREFIX):
            return None
        key_id = plain[len(_PREFIX) :].split("_", 1)[0]
        with self._catalog.connect() as conn:
            row = conn.execute(select(api_keys).where(api_keys.c.key_id == key_id)).first()
        if row is None or not hmac.compare_digest(row.hash, _digest(pepper, plain)):
            return None
        key = _key(row)
        return key if key.revoked_at is None else None
