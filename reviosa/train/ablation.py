"""The paper's Table 4 ablation as configs: each row is a shipped YAML of overrides (``ablations/i.yaml`` ...).

The pipeline's ``aml``/``tokens`` switches, ``reviosa train --ablation`` and the learning benchmark all pick a row
here and apply its overrides, so "AML off" means one thing everywhere: no (layer, head) pairs.
"""

from __future__ import annotations

from pathlib import Path

from reviosa.config import Config, ConfigError

ABLATION_DIR = Path(__file__).with_name("ablations")


class Ablation(Config):
    """One row of Table 4: which of ReVIOSa's two ideas a run keeps, and the overrides that say so."""

    shipped_dir = ABLATION_DIR

    label: str
    seg_tokens: bool
    aml: bool
    overrides: list[str]


def rows() -> dict[str, Ablation]:
    """Every shipped row by name (``i`` ... ``iv``), in the paper's order."""
    return {name: Ablation.from_yaml(name) for name in Ablation.shipped()}


def row_for(aml: bool, tokens: bool) -> str:
    """The name of the row with AML on/off and two tokens on/off."""
    found = [name for name, row in rows().items() if row.aml == aml and row.seg_tokens == tokens]
    if len(found) != 1:
        raise ConfigError(f"{ABLATION_DIR}: expected one ablation row with aml={aml}, seg_tokens={tokens}, "
                          f"found {found}")
    return found[0]


def overrides(aml: bool = True, tokens: bool = True) -> list[str]:
    """The overrides of the row with these switches (ReVIOSa itself: none)."""
    return list(Ablation.from_yaml(row_for(aml, tokens)).overrides)
