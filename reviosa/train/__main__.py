"""``python -m reviosa.train --config cfg.yaml [--resume]``: the entry point for ``torchrun -m``."""

from __future__ import annotations

import typer

from reviosa.cli.train import train

if __name__ == "__main__":
    typer.run(train)
