"""Check the built distributions in a folder: the wheel holds what an installed SDK needs at run time.

``twine check --strict`` checks the metadata (the README renders on PyPI); this checks the files: the typing
marker and the data files the SDK reads (the built-in workflow specs) or documents (the JSON Schema of the
command's ``--events`` lines), and that no test or cache slipped in.
"""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

REQUIRED = (
    "genstudio_async/py.typed",
    "genstudio_async/__init__.py",
    "genstudio_async/cli.py",
    "genstudio_async/_cli/event.schema.json",  # the JSON Schema of `--events` lines (genstudio.event/1)
)
REQUIRED_SUFFIXES = (".json",)  # the built-in workflows' specs
FORBIDDEN_PARTS = ("__pycache__", ".pyc", "tests/", ".venv")


def main(folder: str) -> int:
    wheels = sorted(Path(folder).glob("*.whl"))
    if len(wheels) != 1 or not list(Path(folder).glob("*.tar.gz")):
        print(f"expected one wheel and one sdist in {folder}, got {sorted(p.name for p in Path(folder).iterdir())}")
        return 1
    names = zipfile.ZipFile(wheels[0]).namelist()
    problems = [f"missing {name}" for name in REQUIRED if name not in names]
    problems += [f"no {suffix} data file" for suffix in REQUIRED_SUFFIXES if not any(n.endswith(suffix) for n in names)]
    problems += [f"should not ship {name}" for name in names if any(part in name for part in FORBIDDEN_PARTS)]
    for problem in problems:
        print(f"{wheels[0].name}: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
