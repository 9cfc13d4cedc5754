"""Convert original OpenGVLab InternVL-2.5 checkpoints (remote-code ``internvl_chat`` layout) to transformers'
native ``internvl`` layout: config mapping, weight renaming (fused vision ``qkv`` split), tokenizer files copied.

Conversion streams one safetensors shard at a time (peak memory about one shard), checks every weight against the
shapes the converted config implies, and writes into a temporary folder that is renamed into place at the end.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import torch

from reviosa.data.atomic import replace_dir
from reviosa.model.errors import CheckpointError

SOURCE_MODEL_TYPE = "internvl_chat"
INDEX_FILE = "model.safetensors.index.json"
# Bumped whenever the produced layout changes, so cached conversions made by older code are not reused.
CONVERTER_VERSION = "1"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt", "added_tokens.json",
                   "special_tokens_map.json", "chat_template.json", "chat_template.jinja", "generation_config.json")
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
# Keys of the remote-code configs that mean nothing to transformers' own config classes.
_DROP_TEXT_KEYS = {"_name_or_path", "architectures", "auto_map", "use_bfloat16", "torch_dtype", "dtype",
                   "transformers_version", "attn_implementation", "_attn_implementation_autoset", "use_flash_attn",
                   "model_type"}

_V = r"^vision_model\."
_L = r"^vision_model\.encoder\.layers\.(\d+)\."
_T = "model.vision_tower."
# (pattern on an original key, replacement in the transformers layout); "attention.qkv" is split afterwards.
_RULES = [(re.compile(p), r) for p, r in (
    (_V + r"embeddings\.class_embedding$", _T + "embeddings.cls_token"),
    (_V + r"embeddings\.position_embedding$", _T + "embeddings.position_embeddings"),
    (_V + r"embeddings\.patch_embedding\.(weight|bias)$", _T + r"embeddings.patch_embeddings.projection.\1"),
    (_L + r"ls([12])$", _T + r"encoder.layer.\1.lambda_\2"),
    (_L + r"norm1\.(weight|bias)$", _T + r"encoder.layer.\1.layernorm_before.\2"),
    (_L + r"norm2\.(weight|bias)$", _T + r"encoder.layer.\1.layernorm_after.\2"),
    (_L + r"attn\.qkv\.(weight|bias)$", _T + r"encoder.layer.\1.attention.qkv.\2"),
    (_L + r"attn\.proj\.(weight|bias)$", _T + r"encoder.layer.\1.attention.projection_layer.\2"),
    (_L + r"attn\.(q_norm|k_norm)\.(weight|bias)$", _T + r"encoder.layer.\1.attention.\2.\3"),
    (_L + r"mlp\.(fc1|fc2)\.(weight|bias)$", _T + r"encoder.layer.\1.mlp.\2.\3"),
    (r"^mlp1\.0\.(weight|bias)$", r"model.multi_modal_projector.layer_norm.\1"),
    (r"^mlp1\.1\.(weight|bias)$", r"model.multi_modal_projector.linear_1.\1"),
    (r"^mlp1\.3\.(weight|bias)$", r"model.multi_modal_projector.linear_2.\1"),
    (r"^language_model\.model\.(.+)$", r"model.language_model.\1"),
    (r"^language_model\.lm_head\.weight$", "lm_head.weight"),
)]


class ConversionError(CheckpointError):
    """An OpenGVLab checkpoint cannot be converted; the message names the folder or file and the weight."""


def read_json(path: Path) -> dict:
    """A JSON object from a file, or a ConversionError naming the file."""
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ConversionError(f"{path}: cannot read JSON ({err})") from None
    if not isinstance(data, dict):
        raise ConversionError(f"{path}: expected a JSON object")
    return data


def is_opengvlab_internvl(path: str | os.PathLike) -> bool:
    """Whether a folder holds an original remote-code InternVL checkpoint (config ``model_type: internvl_chat``)."""
    conf = Path(path) / "config.json"
    if not conf.is_file():
        return False
    try:
        return json.loads(conf.read_text()).get("model_type") == SOURCE_MODEL_TYPE
    except (OSError, json.JSONDecodeError, AttributeError):
        return False


def image_token_id_of(src: Path) -> int:
    """The tokenizer's ``<IMG_CONTEXT>`` id (it, ``<img>`` and ``</img>`` each checked to be one token)."""
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    from reviosa.model.tokenizer import IMG_CONTEXT, IMG_END, IMG_START

    # AutoTokenizer peeks at config.json and warns that 'internvl_chat' is unknown; only the tokenizer files matter.
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        tok = AutoTokenizer.from_pretrained(src, trust_remote_code=False)
    except Exception as err:  # noqa: BLE001 - any tokenizer loading failure is reported with the folder
        raise ConversionError(f"{src}: cannot load the tokenizer files ({err})") from None
    finally:
        hf_logging.set_verbosity(level)
    ids = {}
    for t in (IMG_START, IMG_END, IMG_CONTEXT):
        enc = tok.encode(t, add_special_tokens=False)
        if len(enc) != 1:
            raise ConversionError(f"{src}: the tokenizer does not hold {t!r} as one token (got {enc})")
        ids[t] = enc[0]
    return ids[IMG_CONTEXT]


def hf_config_from_opengvlab(conf: dict, image_token_id: int, where: str = "config.json",
                             model_type: str = SOURCE_MODEL_TYPE):
    """An ``InternVLConfig`` equivalent to an ``internvl_chat`` config dict (Qwen2 language model only).

    ``model_type`` names another remote-code config of the same fields (the official ReVIOSa's ``reviosa_chat``).
    """
    from transformers import InternVLConfig, Qwen2Config

    if conf.get("model_type") != model_type:
        raise ConversionError(f"{where}: model_type {conf.get('model_type')!r} is not {model_type!r}")
    vis, llm = conf.get("vision_config"), conf.get("llm_config")
    if not isinstance(vis, dict) or not isinstance(llm, dict):
        raise ConversionError(f"{where}: needs 'vision_config' and 'llm_config' objects")
    if llm.get("model_type") != "qwen2":
        raise ConversionError(f"{where}: llm_config.model_type {llm.get('model_type')!r} is not supported; only the "
                              "Qwen2 language models of InternVL-2.5-1B/4B (model_type 'qwen2') are")
    if conf.get("ps_version", "v2") != "v2":
        raise ConversionError(f"{where}: ps_version {conf.get('ps_version')!r}; transformers' pixel shuffle is 'v2'")
    if conf.get("select_layer", -1) != -1:
        raise ConversionError(f"{where}: select_layer {conf.get('select_layer')} is not -1 (the last vision layer)")
    image_size = int(conf.get("force_image_size") or vis.get("image_size", 448))
    patch = int(vis.get("patch_size", 14))
    ratio = float(conf.get("downsample_ratio", 0.5))
    try:
        vision = dict(hidden_size=vis["hidden_size"], num_hidden_layers=vis["num_hidden_layers"],
                      num_attention_heads=vis["num_attention_heads"], intermediate_size=vis["intermediate_size"],
                      image_size=[image_size, image_size], patch_size=[patch, patch],
                      num_channels=vis.get("num_channels", 3), hidden_act=vis.get("hidden_act", "gelu"),
                      norm_type=vis.get("norm_type", "layer_norm"), layer_norm_eps=vis.get("layer_norm_eps", 1e-6),
                      attention_bias=bool(vis.get("qkv_bias", True)),
                      use_qk_norm=bool(vis.get("qk_normalization", False)),
                      # InternViT initialises its layer scales ls1/ls2 to initializer_factor.
                      layer_scale_init_value=float(vis.get("initializer_factor", 0.1)),
                      attention_dropout=vis.get("attention_dropout", 0.0),
                      projection_dropout=vis.get("dropout", 0.0), use_absolute_position_embeddings=True,
                      use_mean_pooling=True)
    except KeyError as err:
        raise ConversionError(f"{where}: vision_config lacks {err.args[0]!r}") from None
    if vision["norm_type"] not in ("layer_norm", "rms_norm"):
        raise ConversionError(f"{where}: vision_config.norm_type {vision['norm_type']!r} is unknown")
    text = {k: v for k, v in llm.items() if k not in _DROP_TEXT_KEYS}
    tie = bool(text.get("tie_word_embeddings", False))
    try:
        text_config = Qwen2Config(**text)
        side = image_size // patch
        out = InternVLConfig(vision_config=vision, text_config=text_config, image_token_id=image_token_id,
                             image_seq_length=int(side * ratio) ** 2, downsample_ratio=ratio,
                             projector_hidden_act="gelu", vision_feature_layer=-1,
                             vision_feature_select_strategy="default", tie_word_embeddings=tie)
    except (TypeError, ValueError) as err:
        raise ConversionError(f"{where}: cannot map to an InternVLConfig ({err})") from None
    if not 0 <= image_token_id < text_config.vocab_size:
        raise ConversionError(f"{where}: <IMG_CONTEXT> id {image_token_id} is outside the vocabulary "
                              f"({text_config.vocab_size})")
    out.architectures = ["InternVLForConditionalGeneration"]
    return out


def source_shards(src: Path) -> tuple[list[Path], dict[str, str] | None]:
    """(safetensors files, key → file name from the index or None); refuses pickle-only folders."""
    index = src / INDEX_FILE
    if index.is_file():
        weight_map = read_json(index).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise ConversionError(f"{index}: has no 'weight_map'")
        names = sorted(set(weight_map.values()))
        missing = [n for n in names if not (src / n).is_file()]
        if missing:
            raise ConversionError(f"{index}: names shard(s) {missing} that are missing from {src}")
        return [src / n for n in names], weight_map
    files = sorted(src.glob("*.safetensors"))
    if files:
        return files, None
    pickles = sorted(p.name for p in src.iterdir() if p.suffix in _PICKLE_SUFFIXES)
    if pickles:
        raise ConversionError(f"{src}: holds only pickle weights {pickles[:3]}; they are never unpickled here. "
                              "Save the checkpoint as safetensors first (e.g. in a trusted environment).")
    raise ConversionError(f"{src}: no *.safetensors weights found")


def rename(key: str) -> str | None:
    """The transformers-layout name of an original InternVL weight, or None for a name that has no place."""
    for pattern, repl in _RULES:
        if pattern.match(key):
            return pattern.sub(repl, key)
    return None


def convert_tensor(key: str, tensor: torch.Tensor, vision_hidden: int, where: str) -> list[tuple[str, torch.Tensor]]:
    """(new name, tensor) pairs for one original weight: the fused vision ``qkv`` becomes q/k/v projections."""
    new = rename(key)
    if new is None:
        raise ConversionError(f"{where}: weight {key!r} has no counterpart in transformers' InternVL")
    if ".attention.qkv." not in new:
        return [(new, tensor)]
    if tensor.shape[0] != 3 * vision_hidden:
        raise ConversionError(f"{where}: {key} has shape {tuple(tensor.shape)}; a fused qkv needs "
                              f"{3 * vision_hidden} rows (3 x vision hidden size {vision_hidden})")
    q, k, v = tensor.split(vision_hidden, dim=0)
    # Cloned: safetensors refuses to save views that share one storage.
    return [(new.replace(".qkv.", f".{n}_proj."), t.clone()) for n, t in (("q", q), ("k", k), ("v", v))]


def expected_shapes(config) -> dict[str, tuple[int, ...]]:
    """Weight name → shape of a transformers InternVL model with this config (built on the meta device)."""
    from transformers import InternVLForConditionalGeneration

    with torch.device("meta"):
        model = InternVLForConditionalGeneration(config)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def write_internvl_folder(src: Path, out: Path, config, *, divert=None, progress: bool = True,
                          desc: str = "convert InternVL") -> None:
    """Write ``src``'s InternVL weights (renamed, one output file per source shard), ``config`` and the tokenizer files
    into the existing folder ``out``; every weight is checked against the shapes ``config`` implies.

    ``divert(key, tensor)`` may claim a source weight that is not InternVL's (returns True), e.g. the SAM2 of a
    ReVIOSa checkpoint; a weight nobody claims and that has no InternVL counterpart is a ``ConversionError``.
    """
    from safetensors import safe_open
    from safetensors.torch import save_file
    from tqdm.auto import tqdm

    shards, weight_map = source_shards(src)
    expected = expected_shapes(config)
    hidden = config.vision_config.hidden_size
    total = len(weight_map) if weight_map else None
    seen: set[str] = set()
    out_map: dict[str, str] = {}
    names = ([f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
             if len(shards) > 1 else ["model.safetensors"])
    bar = tqdm(total=total, desc=desc, unit="tensor", disable=not progress)
    for shard, out_name in zip(shards, names):
        tensors: dict[str, torch.Tensor] = {}
        try:
            handle = safe_open(str(shard), framework="pt")
        except Exception as err:  # noqa: BLE001 - a truncated or foreign file is reported with its name
            raise ConversionError(f"{shard}: not a readable safetensors file ({err})") from None
        with handle as f:
            keys = list(f.keys())
            if weight_map is not None:
                present = set(keys)
                lacking = sorted(k for k, v in weight_map.items() if v == shard.name and k not in present)
                if lacking:
                    raise ConversionError(f"{shard}: lacks {lacking[:3]} that {INDEX_FILE} places in it")
            for key in keys:
                tensor = f.get_tensor(key)
                bar.update(1)
                if divert is not None and divert(key, tensor):
                    continue
                for new, value in convert_tensor(key, tensor, hidden, str(shard)):
                    if new not in expected:
                        raise ConversionError(f"{shard}: {key} maps to {new}, which transformers' InternVL "
                                              "built from this config does not have (config and weights differ)")
                    if tuple(value.shape) != expected[new]:
                        raise ConversionError(f"{shard}: {key} has shape {tuple(value.shape)} but config.json "
                                              f"implies {expected[new]} for {new}")
                    if new in seen:
                        raise ConversionError(f"{shard}: {key} duplicates {new} from another shard")
                    seen.add(new)
                    tensors[new] = value
                    out_map[new] = out_name
        save_file(tensors, str(out / out_name), metadata={"format": "pt"})
        del tensors
    bar.close()
    missing = sorted(set(expected) - seen - ({"lm_head.weight"} if config.tie_word_embeddings else set()))
    if missing:
        raise ConversionError(f"{src}: lacks weights {missing[:5]} ({len(missing)} in all)")
    if len(names) > 1:
        size = sum((out / n).stat().st_size for n in names)
        (out / INDEX_FILE).write_text(json.dumps({"metadata": {"total_size": size}, "weight_map": out_map},
                                                 indent=1, sort_keys=True))
    config.save_pretrained(out)
    for name in TOKENIZER_FILES:
        if (src / name).is_file():
            shutil.copy2(src / name, out / name)


def convert_internvl_checkpoint(src_dir: str | os.PathLike, dst_dir: str | os.PathLike, *, overwrite: bool = False,
                                progress: bool = True) -> Path:
    """Write the transformers-native (``model_type: internvl``) form of an OpenGVLab InternVL-2.5 folder."""
    src, dst = Path(src_dir).expanduser(), Path(dst_dir).expanduser()
    if not (src / "config.json").is_file():
        raise ConversionError(f"{src}: no config.json (not a checkpoint folder)")
    if dst.resolve() == src.resolve():
        raise ConversionError(f"{dst}: the destination must differ from the source")
    if dst.exists() and not overwrite:
        raise ConversionError(f"{dst}: already exists (pass overwrite to replace it)")
    conf = read_json(src / "config.json")
    source_shards(src)  # refuses pickle-only and incomplete folders before the tokenizer is even read
    config = hf_config_from_opengvlab(conf, image_token_id_of(src), where=str(src / "config.json"))

    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dst.parent, prefix=f".{dst.name}.tmp-"))
    try:
        write_internvl_folder(src, tmp, config, progress=progress)
        (tmp / "conversion.json").write_text(json.dumps({"source_model_type": SOURCE_MODEL_TYPE,
                                                         "converter_version": CONVERTER_VERSION}, indent=1))
        replace_dir(tmp, dst)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dst


def _source_files(src: Path) -> list[Path]:
    """The files of a checkpoint folder that the conversion reads (config, index, weights, tokenizer)."""
    return sorted(p for p in src.iterdir() if p.is_file() and (
        p.suffix in (".json", ".safetensors", ".txt", ".jinja") or p.name in TOKENIZER_FILES))


def source_fingerprint(src: str | os.PathLike) -> str:
    """SHA-256 of the converter version and every file's name and bytes that the conversion reads."""
    h = hashlib.sha256(f"reviosa-internvl-convert-{CONVERTER_VERSION}".encode())
    for p in _source_files(Path(src)):
        h.update(f"\0{p.name}\0{p.stat().st_size}\0".encode())
        with p.open("rb") as f:
            while chunk := f.read(1 << 24):
                h.update(chunk)
    return h.hexdigest()


def _remembered_fingerprint(src: Path, cache: Path) -> str:
    """The content hash, remembered per (folder, file names, sizes, mtimes) so unchanged GBs are not re-read."""
    from reviosa.data.atomic import atomic_write_text

    stat = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in _source_files(src)]
    key = hashlib.sha256(repr((str(src.resolve()), stat)).encode()).hexdigest()[:32]
    memo = cache / "fingerprints" / key
    if memo.is_file():
        return memo.read_text().strip()
    digest = source_fingerprint(src)
    memo.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(memo, digest)
    return digest


def ensure_hf_internvl(path: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> Path:
    """The folder itself, or for an OpenGVLab checkpoint its conversion, cached by the source's content hash."""
    path = Path(path)
    if not is_opengvlab_internvl(path):
        return path
    cache = Path(cache_dir or os.environ.get("REVIOSA_CACHE", Path.home() / ".cache" / "reviosa")) / "internvl-hf"
    dest = cache / _remembered_fingerprint(path, cache)[:24]
    if (dest / "config.json").is_file():
        return dest
    try:
        return convert_internvl_checkpoint(path, dest)
    except (ConversionError, OSError):
        # Another process may have finished the same conversion first; its result is identical.
        if (dest / "config.json").is_file():
            return dest
        raise


__all__ = ["ConversionError", "convert_internvl_checkpoint", "ensure_hf_internvl", "hf_config_from_opengvlab",
           "is_opengvlab_internvl", "source_fingerprint"]
