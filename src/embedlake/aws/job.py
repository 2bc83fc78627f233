"""A heavy function's AWS Batch job (submitted by :mod:`embedlake.aws.batch`): the image's
entrypoint passes ``job FUNCTION EVENT_ID`` to ``python -m embedlake.aws.job``, which records the
invocation as Lambda does, without Lambda's limits, and then pokes dispatch: what the function
emitted (``release.built``, …) re-enters the event flow at once.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from embedlake.aws.container import container
from embedlake.aws.dispatch import poke
from embedlake.aws.invocations import function_spec, run
from embedlake.errors import EmbedlakeError

log = logging.getLogger(__name__)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one function for one recorded event, as a Batch job; 0 when it succeeded."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2:
        log.error("usage: python -m embedlake.aws.job FUNCTION EVENT_ID")
        return 2
    function, event_id = args
    try:
        box = container(limited=False)
        outcome = run(box, function_spec(box, function), box.ws.catalog.events.get(event_id))
    except EmbedlakeError as exc:
        log.error("%s for %s failed: %s", function, event_id, exc)
        return 1
    log.info("%s for %s: %s", function, event_id, outcome["status"])
    poke(box)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
