"""`python -m jobs.nightly INPUT OUTPUT [...]`: the Ray job form of `corpus-nlp nightly`."""

from __future__ import annotations

import typer

from jobs.annotate import nightly_command


def main() -> None:
    typer.run(nightly_command)


if __name__ == "__main__":
    main()
