"""Building ReVIOSa from a config, ``save_pretrained`` (safetensors + config) and ``from_pretrained`` (folder/S3)."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import torch

from reviosa.data.atomic import replace_dir
from reviosa.model.config import ModelConfig

CONFIG_FILE = "config.yaml"
TRAINABLE_FILE = "reviosa.safetensors"
BASE_FILE = "base.safetensors"
TOKENIZER_DIR = "tokenizer"


class CheckpointError(ValueError):
    """A checkpoint cannot be read or does not fit the model; the message names the file."""


def fetch(uri: str | os.PathLike, cache_dir: str | os.PathLike | None = None,
          storage_options: dict | None = None) -> Path:
    """A local path for a local path or an ``s3://`` URI (copied with fsspec into a cache folder keyed by the
    URI and the objects' sizes and ETags, so a changed checkpoint is fetched again)."""
    uri = str(uri)
    if not uri.startswith("s3://"):
        path = Path(uri).expanduser()
        if not path.exists():
            raise CheckpointError(f"{path}: no such file or folder")
        return path
    import fsspec

    fs = fsspec.filesystem("s3", **(storage_options or {}))
    listing = fs.find(uri.rstrip("/"), detail=True)
    if not listing:
        raise CheckpointError(f"{uri}: no such object or prefix")
    stamp = sorted((k, v.get("size"), str(v.get("ETag", ""))) for k, v in listing.items())
    key = hashlib.sha256(repr((uri, stamp)).encode()).hexdigest()[:20]
    cache = Path(cache_dir or os.environ.get("REVIOSA_CACHE", Path.home() / ".cache" / "reviosa"))
    dest = cache / "s3" / key / uri.rstrip("/").rsplit("/", 1)[-1]
    if dest.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=".get-"))
    try:
        if fs.isdir(uri):
            fs.get(uri.rstrip("/") + "/", str(tmp / "d"), recursive=True)
        else:
            fs.get(uri, str(tmp / "d"))
        os.replace(tmp / "d", dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


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


def build_model(cfg: ModelConfig, *, device: str | torch.device = "cpu", load_base: bool = True):
    """A ReviosaModel from a config: real weights where the config names them, random elsewhere."""
    from reviosa.model.mllm import add_lora, build_mllm
    from reviosa.model.modeling import ReviosaModel
    from reviosa.model.sam import build_sam2, freeze_for_training
    from reviosa.model.tokenizer import SEG_TOKENS

    mllm_path = fetch(cfg.mllm.pretrained) if (cfg.mllm.pretrained and load_base) else None
    base, tokenizer = build_mllm(cfg, mllm_path)
    base.requires_grad_(False)
    seg_ids = [tokenizer.convert_tokens_to_ids(t) for t in SEG_TOKENS]
    mllm = add_lora(base, cfg, seg_ids)
    sam = build_sam2(cfg.sam2)
    if cfg.sam2.checkpoint and load_base:
        load_sam2_weights(sam, cfg.sam2.checkpoint)
    freeze_for_training(sam)
    return ReviosaModel(cfg, mllm, tokenizer, sam).to(device)


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


def from_pretrained(path_or_uri: str | os.PathLike, *, device: str | torch.device = "cpu",
                    cache_dir: str | os.PathLike | None = None, storage_options: dict | None = None,
                    overrides: dict | None = None):
    """Load a model saved by ``save_pretrained`` from a folder or an ``s3://`` URI (safetensors only).

    ``overrides`` (nested config fields, e.g. ``{"loss": {"aml_weight": 0.0}}``) replace the saved config's; one
    that changes a weight's shape is refused.
    """
    from pydantic import ValidationError
    from safetensors.torch import load_file

    from reviosa.model.config import ModelConfigError
    from reviosa.yamlconfig import deep_merge

    root = fetch(path_or_uri, cache_dir, storage_options)
    if not (root / CONFIG_FILE).is_file() or not (root / TRAINABLE_FILE).is_file():
        raise CheckpointError(f"{root}: not a ReVIOSa checkpoint (needs {CONFIG_FILE} and {TRAINABLE_FILE})")
    try:
        cfg = ModelConfig.from_yaml(root / CONFIG_FILE)
        if overrides:
            cfg = ModelConfig.model_validate(deep_merge(cfg.model_dump(mode="json"), overrides))
    except ModelConfigError as err:
        raise CheckpointError(str(err)) from None
    except ValidationError as err:
        raise CheckpointError(f"{root}: overrides {overrides}: {err}") from None
    model = build_model(cfg, load_base=True)
    state = {}
    if (root / BASE_FILE).is_file():
        state.update(load_file(str(root / BASE_FILE)))
    trainable = load_file(str(root / TRAINABLE_FILE))
    state.update(trainable)
    params = dict(model.named_parameters())
    need = {n for n, p in params.items() if p.requires_grad}
    missing = sorted(need - set(trainable))
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
    return model.to(device)
