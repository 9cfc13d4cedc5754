"""``python -m reviosa.train --config cfg.yaml [--resume]``: the fine-tuning command, the entry point of torchrun."""

import typer

from reviosa.train.commands import finetune

if __name__ == "__main__":
    typer.run(finetune)
