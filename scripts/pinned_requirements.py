"""Prints pinned requirements from pyproject.toml, one a line: the project's runtime ones and
those of the named extras (what `pip install '.[extra]'` would ask for, without the project
itself), or with --no-deps the packages that the extras' [tool.voice-service.no-deps] lists
have installed after them without their own requirements.

    python scripts/pinned_requirements.py s1 | pip install -r /dev/stdin
    python scripts/pinned_requirements.py --no-deps s1 | pip install --no-deps -r /dev/stdin

The inference image installs these in a layer of their own before it copies the sources, so
that layer (torch's 6 GB) changes only with pyproject.toml, not with the code.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import tomllib
from typing import Any

PYPROJECT = pathlib.Path(__file__).resolve().parent.parent / "pyproject.toml"


def pinned_requirements(pyproject: dict[str, Any], extras: list[str], no_deps: bool = False) -> list[str]:
    project = pyproject["project"]
    unknown = [extra for extra in extras if extra not in project.get("optional-dependencies", {})]
    if unknown:
        raise KeyError(f"no such extra in pyproject.toml: {', '.join(unknown)}")
    if no_deps:
        lists = pyproject.get("tool", {}).get("voice-service", {}).get("no-deps", {})
        requirements = [r for extra in extras for r in lists.get(extra, [])]
    else:
        requirements = [*project["dependencies"], *(r for extra in extras for r in project["optional-dependencies"][extra])]
    return list(dict.fromkeys(requirements))  # the extras repeat some (boto3, say); once each


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("extras", nargs="*", help="optional-dependencies groups, e.g. s1")
    parser.add_argument("--no-deps", action="store_true", help="the packages installed with --no-deps after the extras")
    args = parser.parse_args(argv)
    try:
        requirements = pinned_requirements(tomllib.loads(PYPROJECT.read_text()), args.extras, args.no_deps)
    except KeyError as error:
        print(f"pinned_requirements: {error.args[0]}", file=sys.stderr)
        return 2
    print("\n".join(requirements))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
