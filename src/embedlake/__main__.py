"""``python -m embedlake``: the same as the ``embedlake`` command."""

from embedlake.cli.app import main

main()
