"""Checkpoints of the official ReVIOSa code imported as reviosa checkpoints (``reviosa convert-official``).

The source is what the official ``model/hf/convert_to_hf.py`` writes (``config.json`` with ``model_type:
reviosa_chat``; its remote code is never run): safetensors weights named ``vision_model.*``, ``mlp1.*`` and
``language_model.*`` (InternVL-2.5's remote-code names, LoRA merged into them), ``grounding_encoder.sam2_model.*``
(SAM2, with the memory fuser's layer scale ``gamma`` saved as ``g_weight``) and ``text_hidden_fcs.*`` (the
projection into SAM2's prompt space); its tokenizer holds ``[SEG]``, ``<p>``, ``</p>``, ``<vp>``, ``</vp>`` and
``[SEG_OBJ]``.

The checkpoint written is an ordinary ``save_pretrained`` folder that carries its own frozen base:

* ``internvl/``: the merged InternVL in transformers' layout, whose tokenizer has ``[SEG]``/``[SEG_OBJ]`` renamed
  ``[SEG_ACT]``/``[SEG_TAR]`` in place (same ids, so those tokens keep the trained embedding and ``lm_head`` rows;
  ``<p>``, ``</p>``, ``<vp>``, ``</vp>`` stay ordinary added tokens);
* ``sam2.safetensors``: SAM2 under the ``sam2`` package's names;
* ``config.yaml`` naming both by these paths inside the folder, and ``reviosa.safetensors`` with the trainable
  weights (projection, mask decoder, projector, token rows, LoRA).

The official converter merged LoRA into the language model, so the merged weights become the frozen base and a
fresh LoRA sits on top with ``lora_B = 0``: the imported model computes what the official one does, and fine-tuning
(``reviosa train --set init_from=DST``) trains a new adapter on top of the merged weights.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch

from reviosa.data.atomic import replace_dir
from reviosa.model.config import ModelConfig
from reviosa.model.convert import (
    ConversionError,
    hf_config_from_opengvlab,
    image_token_id_of,
    read_json,
    source_shards,
    write_internvl_folder,
)
from reviosa.model.tokenizer import SEG_ACT, SEG_TAR

OFFICIAL_MODEL_TYPE = "reviosa_chat"
SAM_PREFIX = "grounding_encoder.sam2_model."
PROJECTION_PREFIX = "text_hidden_fcs."
#: official token → reviosa token taking over its id (and so its trained embedding and lm_head rows)
TOKEN_RENAMES = {"[SEG]": SEG_ACT, "[SEG_OBJ]": SEG_TAR}
BASE_DIR = "internvl"
SAM2_FILE = "sam2.safetensors"
SOURCE_FILE = "imported_from.json"
# Templates whose turns are reviosa's (Qwen <|im_start|>): xtuner's qwen_chat of the official 1B configs and
# InternVL-2.5's own. The official 4B configs use phi3_chat, whose turns reviosa's prompts do not reproduce.
QWEN_TEMPLATES = ("qwen_chat", "internvl2_5")
# The tokenizer files that may spell a token's text (the rest are vocabularies, merges and templates).
_TOKEN_FILES = ("tokenizer.json", "tokenizer_config.json", "added_tokens.json", "special_tokens_map.json")


def is_official_reviosa(path: str | os.PathLike) -> bool:
    """Whether a folder holds a checkpoint of the official ReVIOSa code (``config.json`` model_type reviosa_chat)."""
    conf = Path(path) / "config.json"
    try:
        return json.loads(conf.read_text()).get("model_type") == OFFICIAL_MODEL_TYPE
    except (OSError, json.JSONDecodeError, AttributeError):
        return False


def _load_tokenizer(src: Path):
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    # AutoTokenizer peeks at config.json and warns that 'reviosa_chat' is unknown; only the tokenizer files matter.
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        return AutoTokenizer.from_pretrained(src, trust_remote_code=False)
    except Exception as err:  # noqa: BLE001 - any tokenizer loading failure is reported with the folder
        raise ConversionError(f"{src}: cannot load the tokenizer files ({err})") from None
    finally:
        hf_logging.set_verbosity(level)


def _single_token(tokenizer, text: str) -> int | None:
    ids = tokenizer.encode(text, add_special_tokens=False)
    return ids[0] if len(ids) == 1 else None


def _renamed(value, names: dict[str, str]):
    """A JSON value with every string (and mapping key) equal to a token in ``names`` replaced."""
    if isinstance(value, dict):
        return {names.get(k, k): _renamed(v, names) for k, v in value.items()}
    if isinstance(value, list):
        return [_renamed(v, names) for v in value]
    return names.get(value, value) if isinstance(value, str) else value


def rename_tokens(folder: Path, names: dict[str, str]) -> None:
    """Rename added tokens in a tokenizer folder's files, keeping their ids."""
    for name in _TOKEN_FILES:
        path = folder / name
        if path.is_file():
            path.write_text(json.dumps(_renamed(read_json(path), names), ensure_ascii=False, indent=1))


def _model_config(config: ModelConfig | str | os.PathLike, overrides: Sequence[str], hf_config) -> ModelConfig:
    """The reviosa config of the import: ``config`` with the official architecture and the carried bases."""
    base = config if isinstance(config, ModelConfig) else ModelConfig.from_yaml(config)
    raw = base.model_dump(mode="json")
    v, t = hf_config.vision_config, hf_config.text_config
    rope = getattr(t, "rope_parameters", None) or {}
    # The architecture fields matter even with real weights: the vision-token count of the prompts comes from them.
    raw["mllm"]["vision"].update(hidden_size=v.hidden_size, num_hidden_layers=v.num_hidden_layers,
                                 num_attention_heads=v.num_attention_heads, intermediate_size=v.intermediate_size,
                                 image_size=v.image_size[0], patch_size=v.patch_size[0])
    raw["mllm"]["text"].update(hidden_size=t.hidden_size, num_hidden_layers=t.num_hidden_layers,
                               num_attention_heads=t.num_attention_heads, num_key_value_heads=t.num_key_value_heads,
                               intermediate_size=t.intermediate_size, vocab_size=t.vocab_size,
                               max_position_embeddings=t.max_position_embeddings, rms_norm_eps=t.rms_norm_eps,
                               rope_theta=rope.get("rope_theta", raw["mllm"]["text"]["rope_theta"]),
                               tie_word_embeddings=bool(hf_config.tie_word_embeddings))
    raw["mllm"].update(downsample_ratio=hf_config.downsample_ratio, pretrained=BASE_DIR)
    raw["sam2"]["checkpoint"] = SAM2_FILE
    return ModelConfig.from_dict(raw, overrides, source="convert-official")


def _with_paths(cfg: ModelConfig, root: Path) -> ModelConfig:
    """``cfg`` with its carried bases as paths inside ``root``."""
    mllm = cfg.mllm.model_copy(update={"pretrained": str(root / BASE_DIR)})
    sam2 = cfg.sam2.model_copy(update={"checkpoint": str(root / SAM2_FILE)})
    return cfg.model_copy(update={"mllm": mllm, "sam2": sam2})


def _check_keys(src: Path, what: str, prefix: str, problems: str | None) -> None:
    if problems:
        raise ConversionError(f"{src}: the {prefix}* weights ({what}) do not fit: {problems}")


def import_official_checkpoint(src_dir: str | os.PathLike, dst_dir: str | os.PathLike, *,
                               config: ModelConfig | str | os.PathLike = "1b", overrides: Sequence[str] = (),
                               overwrite: bool = False, any_template: bool = False,
                               progress: bool = True) -> Path:
    """Write a reviosa checkpoint equivalent to an official ReVIOSa one (see the module docstring).

    ``config`` (a ``ModelConfig``, shipped name or YAML path) and ``overrides`` set what the official checkpoint does
    not say (SAM2 version and size, LoRA, losses, prompts, inference); its architecture comes from the source.
    Weights that are missing, unknown or of another shape are a ``ConversionError`` naming them; nothing is written
    then. ``any_template`` accepts a source trained with a non-Qwen chat template (its answers may not follow).
    """
    from safetensors.torch import save_file

    from reviosa.model.checkpoint import sam2_state_problems, save_pretrained
    from reviosa.model.modeling import ReviosaModel
    from reviosa.model.sam import sam2_shapes

    src, dst = Path(src_dir).expanduser(), Path(dst_dir).expanduser()
    where = src / "config.json"
    if not where.is_file():
        raise ConversionError(f"{src}: no config.json (not a checkpoint folder)")
    if dst.resolve() == src.resolve():
        raise ConversionError(f"{dst}: the destination must differ from the source")
    if dst.exists() and not overwrite:
        raise ConversionError(f"{dst}: already exists (pass overwrite to replace it)")
    conf = read_json(where)
    if conf.get("model_type") != OFFICIAL_MODEL_TYPE:
        hint = (" (an InternVL-2.5 base model: use it as mllm.pretrained or convert it with "
                "`reviosa convert-internvl`)" if conf.get("model_type") == "internvl_chat" else "")
        raise ConversionError(f"{where}: model_type {conf.get('model_type')!r} is not the official ReVIOSa's "
                              f"{OFFICIAL_MODEL_TYPE!r}{hint}")
    template = conf.get("template")
    if template not in QWEN_TEMPLATES and not any_template:
        raise ConversionError(f"{where}: trained with chat template {template!r}; reviosa prompts use the Qwen "
                              f"turns of {QWEN_TEMPLATES}, so its answers would not follow them (pass any_template / "
                              "--any-template to import it anyway)")
    source_shards(src)  # refuses pickle-only and incomplete folders before anything is read
    tokenizer = _load_tokenizer(src)
    old_ids = {}
    for old, new in TOKEN_RENAMES.items():
        old_ids[old] = _single_token(tokenizer, old)
        if old_ids[old] is None:
            raise ConversionError(f"{src}: the tokenizer does not hold the official {old!r} as one token")
        if new in tokenizer.get_vocab():
            raise ConversionError(f"{src}: the tokenizer already holds {new!r}; it must take over {old!r}'s id")
    hf_config = hf_config_from_opengvlab(conf, image_token_id_of(src), where=str(where),
                                         model_type=OFFICIAL_MODEL_TYPE)
    if hf_config.text_config.vocab_size < len(tokenizer):
        raise ConversionError(f"{where}: llm_config.vocab_size {hf_config.text_config.vocab_size} is smaller than "
                              f"the tokenizer ({len(tokenizer)} tokens)")
    cfg = _model_config(config, overrides, hf_config)
    hidden, prompt_dim = hf_config.text_config.hidden_size, cfg.sam2.d_model
    want_projection = {"0.weight": (hidden, hidden), "0.bias": (hidden,), "2.weight": (prompt_dim, hidden),
                       "2.bias": (prompt_dim,)}
    sam_state: dict[str, torch.Tensor] = {}
    projection: dict[str, torch.Tensor] = {}

    def divert(key: str, tensor: torch.Tensor) -> bool:
        if key.startswith(SAM_PREFIX):
            # convert_to_hf.py renamed the layer scale because transformers' loader rewrites names holding 'gamma'.
            sam_state[re.sub(r"\.g_weight$", ".gamma", key[len(SAM_PREFIX):])] = tensor
        elif key.startswith(PROJECTION_PREFIX):
            projection[key[len(PROJECTION_PREFIX):]] = tensor
        else:
            return False
        return True

    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dst.parent, prefix=f".{dst.name}.tmp-"))
    try:
        staging = tmp / "staging"
        (staging / BASE_DIR).mkdir(parents=True)
        write_internvl_folder(src, staging / BASE_DIR, hf_config, divert=divert, progress=progress,
                              desc="import ReVIOSa")
        _check_keys(src, f"the model config's SAM2, sam2.version {cfg.sam2.version}, sam2.size {cfg.sam2.size}",
                    SAM_PREFIX, sam2_state_problems(sam2_shapes(cfg.sam2), {k: v.shape for k, v in sam_state.items()}))
        _check_keys(src, f"Linear({hidden}, {hidden}) → ReLU → Linear({hidden}, {prompt_dim})", PROJECTION_PREFIX,
                    _projection_problems(want_projection, projection))
        rename_tokens(staging / BASE_DIR, TOKEN_RENAMES)
        renamed = _load_tokenizer(staging / BASE_DIR)
        for old, new in TOKEN_RENAMES.items():
            if _single_token(renamed, new) != old_ids[old] or len(renamed) != len(tokenizer):
                raise ConversionError(f"{src}: could not give {new!r} the id of {old!r} ({old_ids[old]}) in the "
                                      "tokenizer files")
        save_file({k: v.contiguous() for k, v in sam_state.items()}, str(staging / SAM2_FILE),
                  metadata={"format": "pt"})
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)  # the fresh LoRA's A matrices: the same import gives the same checkpoint
            model = ReviosaModel.from_config(_with_paths(cfg, staging))
        with torch.no_grad():
            model.projection.load_state_dict(projection)
        out = save_pretrained(model, tmp / "checkpoint")
        del model
        for name in (BASE_DIR, SAM2_FILE):
            shutil.move(str(staging / name), str(out / name))
        (out / "config.yaml").write_text(cfg.to_yaml())
        (out / SOURCE_FILE).write_text(json.dumps({
            "source": str(src.resolve()), "model_type": OFFICIAL_MODEL_TYPE, "template": template,
            "tokens": TOKEN_RENAMES, "token_ids": {TOKEN_RENAMES[k]: v for k, v in old_ids.items()},
            "lora": "merged into the base by the official converter; a fresh zero LoRA is on top"}, indent=1))
        replace_dir(out, dst)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dst


def _projection_problems(want: dict[str, tuple], got: dict[str, torch.Tensor]) -> str | None:
    """The projection's differences in the official names, or None."""
    missing = sorted(PROJECTION_PREFIX + k for k in set(want) - set(got))
    unexpected = sorted(PROJECTION_PREFIX + k for k in set(got) - set(want))
    reshaped = [f"{PROJECTION_PREFIX}{k} {tuple(got[k].shape)} vs {want[k]}" for k in sorted(set(want) & set(got))
                if tuple(got[k].shape) != want[k]]
    parts = [f"{label} {items}" for label, items in (("missing", missing), ("unexpected", unexpected),
                                                      ("of another shape", reshaped)) if items]
    return "; ".join(parts) or None


__all__ = ["OFFICIAL_MODEL_TYPE", "import_official_checkpoint", "is_official_reviosa", "rename_tokens"]
