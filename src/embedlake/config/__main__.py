"""``python -m embedlake.config [--toml]``: docs/settings.md (or the default toml) on stdout.

``make docs`` runs it to refresh the page after a setting changed.
"""

from __future__ import annotations

import argparse
import sys

from embedlake.config.docs import default_toml, settings_markdown


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m embedlake.config", description=__doc__)
    parser.add_argument("--toml", action="store_true", help="the default embedlake.toml instead")
    args = parser.parse_args(argv)
    sys.stdout.write(default_toml() if args.toml else settings_markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
