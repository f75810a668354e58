"""mypy over the one `ragsync` namespace: `python -m tests.typecheck ragsync streams producers tests benchmarks`.

pyproject.toml installs streams/, producers/ and proto/ as ragsync.streams, ragsync.producers and ragsync.proto
(a package-dir mapping). mypy names a file by its folder and does not read that mapping, so it would check
streams/fetcher.py as `streams.fetcher` and find no `ragsync.streams`. This names those files as installed and
otherwise runs mypy as its command line does, with the settings of pyproject.toml.
"""

from __future__ import annotations

import sys

from mypy import build
from mypy.errors import CompileError
from mypy.main import process_options
from mypy.modulefinder import BuildSource

INSTALLED_AS = {"streams": "ragsync.streams", "producers": "ragsync.producers", "proto": "ragsync.proto"}


def as_installed(source: BuildSource) -> BuildSource:
    """The source named as the package-dir mapping installs it."""
    top, _, rest = (source.module or "").partition(".")
    if top not in INSTALLED_AS:
        return source
    module = INSTALLED_AS[top] + (f".{rest}" if rest else "")
    return BuildSource(source.path, module, source.text, source.base_dir)


def main(args: list[str]) -> int:
    sources, options = process_options(args)
    try:
        result = build.build([as_installed(source) for source in sources], options)
    except CompileError as error:
        print("\n".join(error.messages), file=sys.stderr)
        return 2
    for line in result.errors:
        print(line)
    files = len({source.path for source in sources})
    print(f"Found {len(result.errors)} errors in {files} source files" if result.errors else f"Success: {files} files")
    return 1 if result.errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
