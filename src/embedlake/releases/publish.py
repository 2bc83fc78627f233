"""Publish (move an alias, through the gate unless forced), roll back, and retention.

Neither move shrinks coverage: a release behind the catalog is brought up to date before the alias
moves to it (``releases.coverage``). By hand (CLI, API) that happens in place while the gap is at
most ``releases.catch_up_limit`` documents; a release further behind is refused with the count and
the command that catches it up (``embedlake catch-up``), so a request never embeds a corpus while
its caller waits. The runtime's own publish, at the end of a build, always catches up.
"""

from __future__ import annotations

import getpass
import logging
from typing import Literal

from embedlake.catalog.releases import AliasMove, check_alias
from embedlake.errors import Conflict, InputError
from embedlake.releases import coverage, gate
from embedlake.steps import DirectSteps
from embedlake.workspace import Workspace

CatchUp = Literal["small", "all"]

log = logging.getLogger(__name__)


def actor() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def publish(
    ws: Workspace,
    release_id: str,
    alias: str = "production",
    *,
    force: bool = False,
    actor: str = "cli",
    reason: str = "",
    regate: bool = True,
    catch_up: CatchUp = "small",
) -> AliasMove:
    """Point ``alias`` at the release. Unless forced, it must have passed the gate against the
    release the alias points to now (re-run here when the alias moved since it was built). A
    release behind the catalog is caught up first: up to ``releases.catch_up_limit`` documents
    (``catch_up="small"``), or however many (``"all"``); ``force`` skips the gate, never this."""
    check_alias(alias)  # before any work: a gate re-run costs an evaluation
    releases = ws.catalog.releases
    release = releases.get(release_id)
    if release.status in ("building", "failed", "removed") or release.index_id is None:
        raise InputError(
            f"release {release_id} is {release.status}: only a built release can be published"
        )
    current = releases.alias(alias)
    if current == release_id:
        raise Conflict(f"alias {alias!r} already points to {release_id}")
    behind = _refuse_if_far_behind(ws, release_id, alias, catch_up)
    if not force:
        gated = release.report.get("gate", {})
        if regate and (
            release.report.get("against") != current or release.report.get("alias") != alias
        ):
            gated = _regate(ws, release_id, current)
        if not gated.get("passed"):
            failed = [gate.describe(r) for r in gated.get("rules", []) if not r["passed"]]
            if gated.get("note"):
                failed.append(str(gated["note"]))
            raise InputError(
                f"release {release_id} fails the gate against {current}: "
                + "; ".join(failed)
                + " (use --force to publish anyway)"
            )
    caught_up = _caught_up(ws, release_id, behind)
    with ws.catalog.begin():  # one transaction: nobody sees the alias on a release "built"
        move = releases.move(
            alias,
            release_id,
            kind="publish",
            actor=actor,
            reason=(reason or ("forced" if force else "passed the gate")) + caught_up,
            expect=current,
        )
        releases.update(release_id, status="published")
    log.info("%s → %s (was %s)", alias, release_id, current)
    return move


def _regate(ws: Workspace, release_id: str, current: str | None) -> dict[str, object]:
    """The gate again, against the release the alias points to now."""
    releases = ws.catalog.releases
    against = releases.get(current) if current else None
    return gate.judge(ws, releases.get(release_id), against).decision


def rollback(
    ws: Workspace, alias: str = "production", *, actor: str = "cli", reason: str = ""
) -> AliasMove:
    """One step back: the alias returns to the release it pointed to before its last publish."""
    check_alias(alias)
    releases = ws.catalog.releases
    stack = releases.stack(alias)
    if not stack:
        raise InputError(f"alias {alias!r} has never been published")
    if len(stack) < 2:
        raise InputError(f"alias {alias!r} has no earlier release to roll back to")
    behind = _refuse_if_far_behind(ws, stack[-2], alias, "small")
    caught_up = _caught_up(ws, stack[-2], behind)
    return releases.move(
        alias,
        stack[-2],
        kind="rollback",
        actor=actor,
        reason=(reason or f"rollback from {stack[-1]}") + caught_up,
        expect=stack[-1],
    )


def _refuse_if_far_behind(ws: Workspace, release_id: str, alias: str, catch_up: CatchUp) -> int:
    """How many live documents the release lacks; a Conflict naming the count, the limit and the
    command when that is more than may be caught up while the caller waits."""
    behind = coverage.lacking(ws, release_id)
    limit = ws.settings.releases.catch_up_limit
    if catch_up == "small" and behind > limit:
        raise Conflict(
            f"release {release_id} lacks {behind} of the catalog's live documents, more than "
            f"releases.catch_up_limit ({limit}) to embed while {alias!r} waits: run `embedlake "
            f"catch-up <workspace> {release_id}` (or leave it to `embedlake up`), then move "
            f"{alias!r} again"
        )
    return behind


def _caught_up(ws: Workspace, release_id: str, behind: int) -> str:
    """Catch the release up in this process (the build's own code); the note for the history."""
    if not behind:
        return ""
    done = coverage.catch_up(DirectSteps(ws), ws, release_id)
    return f" (caught up {done} documents)" if done else ""


def protected(ws: Workspace) -> set[str]:
    """Releases an alias points to, or pointed to in its last ``keep_moves`` moves."""
    keep = ws.settings.releases.keep_moves
    releases = ws.catalog.releases
    out = set(releases.aliases().values())
    for name in releases.aliases():
        for move in releases.history(name)[-keep:]:
            out.add(move.to_release)
            if move.from_release:
                out.add(move.from_release)
    return out


def retain(ws: Workspace) -> list[str]:
    """Remove the files of releases no alias needs (never a protected or building one)."""
    keep = protected(ws)
    removed = []
    for release in ws.catalog.releases.all():
        if release.id in keep or release.status in ("building", "removed"):
            continue
        for info in list(ws.lake.list(release.prefix)):
            ws.lake.delete(info.key)
        ws.catalog.releases.update(release.id, status="removed")
        removed.append(release.id)
    return removed
