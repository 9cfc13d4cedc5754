"""The ReVIOSa checkpoint folder: writing one from a model, reading its config and weights back (folder or S3).

Building the model lives in ``modeling.ReviosaModel.from_config`` / ``from_pretrained``; this module never needs the
model class, only the objects it is handed.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from reviosa.config import ConfigError
from reviosa.data.atomic import replace_dir
from reviosa.model import pretrained
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
    """Load an official SAM2 checkpoint (``.pt`` read with ``weights_only=True``) or a safetensors file.

    Weights that do not fit the model exactly (missing, unexpected or reshaped) are a ``CheckpointError`` naming a few
    of each and, when the file looks like another SAM2 release or Hiera size, the ``sam2.*`` setting to change.
    """
    path = fetch(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - any unpickling refusal is reported with the file name
            raise CheckpointError(f"{path}: not a weights-only SAM2 checkpoint ({err})") from None
        state = state.get("model", state) if isinstance(state, dict) else state
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: not a SAM2 state dict (expected {{name: tensor}}, optionally under 'model')")
    problems = sam2_state_problems({k: v.shape for k, v in sam.state_dict().items()},
                                   {k: v.shape for k, v in state.items()})
    if problems:
        raise CheckpointError(f"{path}: does not fit the SAM2 model of this config ({problems})")
    sam.load_state_dict(state)


# Weights only SAM2.1 models have (configs/sam2.1: no_obj_embed_spatial, proj_tpos_enc_in_obj_ptrs).
_SAM21_ONLY = ("no_obj_embed_spatial", "obj_ptr_tpos_proj.weight", "obj_ptr_tpos_proj.bias")
_TRUNK_BLOCK = re.compile(r"^image_encoder\.trunk\.blocks\.(\d+)\.")


def hiera_size_of(shapes: Mapping[str, Sequence[int]]) -> str | None:
    """The released Hiera size (``HIERA_SIZES`` name) whose trunk has these weights, judged by width and depth."""
    from reviosa.model.config import HIERA_SIZES

    patch = shapes.get("image_encoder.trunk.patch_embed.proj.weight")
    blocks = [int(m.group(1)) for k in shapes if (m := _TRUNK_BLOCK.match(k))]
    if patch is None or not blocks:
        return None
    for name, trunk in HIERA_SIZES.items():
        if trunk["embed_dim"] == patch[0] and sum(trunk["stages"]) == max(blocks) + 1:
            return name
    return None


def sam2_state_problems(own: Mapping[str, Sequence[int]], given: Mapping[str, Sequence[int]]) -> str | None:
    """None when SAM2 weights (name → shape) fit a model's exactly, else what differs and, when it can tell, why."""
    def natural(name: str) -> list:
        return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]

    missing = sorted(set(own) - set(given), key=natural)
    unexpected = sorted(set(given) - set(own), key=natural)
    reshaped = sorted((k for k in set(own) & set(given) if tuple(own[k]) != tuple(given[k])), key=natural)
    if not (missing or unexpected or reshaped):
        return None
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing, e.g. {missing[:4]}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected, e.g. {unexpected[:4]}")
    if reshaped:
        parts.append(f"{len(reshaped)} of another shape, e.g. " + ", ".join(
            f"{k} {tuple(given[k])} vs the model's {tuple(own[k])}" for k in reshaped[:3]))
    hints = []
    if any(k.startswith("grounding_encoder.sam2_model.") for k in given):
        hints.append("this is a whole ReVIOSa checkpoint of the official code: import it with "
                     "`reviosa convert-official`")
    elif not any(k.startswith(("image_encoder.", "sam_mask_decoder.")) for k in given):
        hints.append("it holds no SAM2 image encoder or mask decoder weights: is it a SAM2 checkpoint at all?")
    else:
        has_21, want_21 = any(k in given for k in _SAM21_ONLY), any(k in own for k in _SAM21_ONLY)
        if has_21 and not want_21:
            hints.append("this looks like a SAM2.1 checkpoint (sam2.1_hiera_*.pt): set sam2.version=2.1")
        elif want_21 and not has_21:
            hints.append("this looks like a SAM2 (v1) checkpoint (sam2_hiera_*.pt): set sam2.version=2")
        size, ours = hiera_size_of(given), hiera_size_of(own)
        if size is not None and size != ours:
            hints.append(f"its image encoder is Hiera {size!r}: set sam2.size={size} and leave the sam2 trunk fields "
                         "(embed_dim, num_heads, stages, global_att_blocks, window_spec, "
                         "window_pos_embed_bkg_spatial_size) null")
    return "; ".join(parts) + "".join(f". Hint: {h}" for h in hints)


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
        # one metadata key: safetensors writes a map's keys in hash order, so two would make equal saves differ
        meta = {"format": "pt"}
        save_file(trainable, str(tmp / TRAINABLE_FILE), metadata=meta)
        if base:
            save_file(base, str(tmp / BASE_FILE), metadata=meta)
        replace_dir(tmp, directory)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return directory


#: Config fields that name frozen base weights (a path or s3:// URI; a relative path names a file in the checkpoint).
BASE_FIELDS = (("mllm", "pretrained"), ("sam2", "checkpoint"))


def _json_model_type(path: Path) -> str | None:
    import json

    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data.get("model_type") if isinstance(data, dict) else None


def _resolve_inner_bases(cfg: ModelConfig, root: Path) -> ModelConfig:
    """``cfg`` with the bases the checkpoint at ``root`` carries (relative paths in its own config) made local paths,
    where ``cfg`` names that same relative path or no base at all."""
    import yaml

    try:
        saved = yaml.safe_load((root / CONFIG_FILE).read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return cfg
    for section, field in BASE_FIELDS:
        sub_raw = saved.get(section) if isinstance(saved, dict) else None
        rel = sub_raw.get(field) if isinstance(sub_raw, dict) else None
        if not isinstance(rel, str) or "://" in rel or Path(rel).is_absolute() or not (root / rel).exists():
            continue
        sub = getattr(cfg, section)
        if getattr(sub, field) in (None, rel):
            cfg = cfg.model_copy(update={section: sub.model_copy(update={field: str((root / rel).resolve())})})
    return cfg


@dataclass
class SavedCheckpoint:
    """A checkpoint folder read back: its config (overrides applied) and the weights ``save_pretrained`` wrote."""

    root: Path
    config: ModelConfig
    trainable: dict[str, torch.Tensor]
    base: dict[str, torch.Tensor]


def read_pretrained(path_or_uri: str | os.PathLike, *, cache_dir: str | os.PathLike | None = None,
                    config: ModelConfig | None = None, overrides: Sequence[str] = ()) -> SavedCheckpoint:
    """Config and state dicts of a folder, ``s3://`` URI or shipped name (``reviosa-tiny-base``, hash-checked) written
    by ``save_pretrained`` (safetensors only).

    ``config`` replaces the saved config; ``overrides`` (``key=value``, e.g. ``loss.aml_heads=[]``) then change it.
    A checkpoint may carry its own frozen base (``reviosa convert-official`` writes one): its config then names it by
    a path inside the folder (``mllm.pretrained: internvl``, ``sam2.checkpoint: sam2.safetensors``), resolved here
    against the (fetched) folder, also for a ``config`` that names no base of its own (``init_from`` runs).
    """
    from safetensors.torch import load_file

    root = fetch(pretrained.resolve(path_or_uri), cache_dir)
    if not (root / CONFIG_FILE).is_file() or not (root / TRAINABLE_FILE).is_file():
        hint = ""
        if (root / "config.json").is_file() and _json_model_type(root / "config.json") == "reviosa_chat":
            hint = "; it is a checkpoint of the official ReVIOSa code: import it with `reviosa convert-official`"
        raise CheckpointError(f"{root}: not a ReVIOSa checkpoint (needs {CONFIG_FILE} and {TRAINABLE_FILE}){hint}")
    try:
        cfg = ModelConfig.from_yaml(root / CONFIG_FILE) if config is None else config
        cfg = cfg.with_overrides(overrides, source=str(root / CONFIG_FILE)) if overrides else cfg
    except ConfigError as err:
        raise CheckpointError(str(err)) from None
    cfg = _resolve_inner_bases(cfg, root)
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
