"""``python -m genstudio_async.emulator``: run a local GenStudio emulator (same flags as ``genstudio emulator``)."""

from __future__ import annotations

import argparse
import sys

from ..cli import EMULATOR_DESCRIPTION, add_emulator_arguments
from ._runner import run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m genstudio_async.emulator", description=EMULATOR_DESCRIPTION)
    add_emulator_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
