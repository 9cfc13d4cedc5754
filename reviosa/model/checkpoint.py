"""The ReVIOSa checkpoint folder: writing one from a model, reading its config and weights back (folder or S3).

Building the model lives in ``modeling.ReviosaModel.from_config`` / ``from_pretrained``; this module never needs the
model class, only the objects it is handed.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from reviosa.config import ConfigError
from reviosa.data.atomic import replace_dir
from reviosa.model.config import ModelConfig
from reviosa.model.errors import CheckpointError

CONFIG_FILE = "config.yaml"
TRAINABLE_FILE = "reviosa.safetensors"
BASE_FILE = "base.safetensors"
TOKENIZER_DIR = "tokenizer"


def fetch(uri: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> Path:
    """A local path for a local path or an ``s3://`` URI (:func:`reviosa.storage.fetch.fetch`, cached); a missing one
    is a ``CheckpointError``."""
    from reviosa.storage.fetch import fetch as fetch_object

    try:
        return fetch_object(uri, cache_dir)
    except FileNotFoundError as err:
        raise CheckpointError(str(err)) from None


def load_sam2_weights(sam, path: str | os.PathLike) -> None:
    """Load an official SAM2 checkpoint (``.pt`` read with ``weights_only=True``) or a safetensors file."""
    path = fetch(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - any unpickling refusal is reported with the file name
            raise CheckpointError(f"{path}: not a weights-only SAM2 checkpoint ({err})") from None
        state = state.get("model", state)
    missing, unexpected = sam.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(f"{path}: does not match the SAM2 config (missing {missing[:5]}, "
                              f"unexpected {unexpected[:5]})")


def _random_base_prefixes(cfg: ModelConfig) -> tuple[str, ...]:
    """Frozen weights that exist nowhere but in this model (random init) and so must be saved with it."""
    out = []
    if not cfg.mllm.pretrained:
        out.append("mllm.")
    if not cfg.sam2.checkpoint:
        out.append("sam.")
    return tuple(out)


def save_pretrained(model, directory: str | os.PathLike) -> Path:
    """Write config, tokenizer, trainable weights (LoRA, token rows, projector, projection, mask decoder) and,
    for halves built with random weights, their frozen weights; atomically (a temp folder renamed in place)."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}.tmp-"))
    try:
        (tmp / CONFIG_FILE).write_text(model.config.to_yaml())
        model.tokenizer.save_pretrained(tmp / TOKENIZER_DIR)
        trainable, base = {}, {}
        random_prefixes = _random_base_prefixes(model.config)
        for name, t in model.state_dict(keep_vars=True).items():
            if isinstance(t, torch.nn.Parameter) and t.requires_grad:
                trainable[name] = t.detach().to("cpu").contiguous().clone()
            elif name.startswith(random_prefixes):
                base[name] = t.detach().to("cpu").contiguous().clone()
        meta = {"format": "reviosa", "config": CONFIG_FILE}
        save_file(trainable, str(tmp / TRAINABLE_FILE), metadata=meta)
        if base:
            save_file(base, str(tmp / BASE_FILE), metadata=meta)
        replace_dir(tmp, directory)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return directory


@dataclass
class SavedCheckpoint:
    """A checkpoint folder read back: its config (overrides applied) and the weights ``save_pretrained`` wrote."""

    root: Path
    config: ModelConfig
    trainable: dict[str, torch.Tensor]
    base: dict[str, torch.Tensor]


def read_pretrained(path_or_uri: str | os.PathLike, *, cache_dir: str | os.PathLike | None = None,
                    config: ModelConfig | None = None, overrides: Sequence[str] = ()) -> SavedCheckpoint:
    """Config and state dicts of a folder or ``s3://`` URI written by ``save_pretrained`` (safetensors only).

    ``config`` replaces the saved config; ``overrides`` (``key=value``, e.g. ``loss.aml_heads=[]``) then change it.
    """
    from safetensors.torch import load_file

    root = fetch(path_or_uri, cache_dir)
    if not (root / CONFIG_FILE).is_file() or not (root / TRAINABLE_FILE).is_file():
        raise CheckpointError(f"{root}: not a ReVIOSa checkpoint (needs {CONFIG_FILE} and {TRAINABLE_FILE})")
    try:
        cfg = ModelConfig.from_yaml(root / CONFIG_FILE) if config is None else config
        cfg = cfg.with_overrides(overrides, source=str(root / CONFIG_FILE)) if overrides else cfg
    except ConfigError as err:
        raise CheckpointError(str(err)) from None
    base = load_file(str(root / BASE_FILE)) if (root / BASE_FILE).is_file() else {}
    return SavedCheckpoint(root, cfg, load_file(str(root / TRAINABLE_FILE)), base)


def load_weights(model: torch.nn.Module, saved: SavedCheckpoint) -> None:
    """Load saved weights into a model built from their config; a missing, unknown or reshaped weight is refused."""
    root = saved.root
    state = {**saved.base, **saved.trainable}
    need = {n for n, p in model.named_parameters() if p.requires_grad}
    missing = sorted(need - set(saved.trainable))
    if missing:
        raise CheckpointError(f"{root / TRAINABLE_FILE}: lacks trainable weights {missing[:5]}")
    own = model.state_dict()
    unexpected = sorted(set(state) - set(own))
    if unexpected:
        raise CheckpointError(f"{root}: weights {unexpected[:5]} do not exist in the model built from its config")
    for name, value in state.items():
        if own[name].shape != value.shape:
            raise CheckpointError(f"{root}: {name} has shape {tuple(value.shape)}, the model {tuple(own[name].shape)}")
    model.load_state_dict(state, strict=False)
