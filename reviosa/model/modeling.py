"""ReVIOSa: InternVL-2.5 emits ``[SEG_ACT]``/``[SEG_TAR]``; their hidden states prompt SAM2's mask decoder."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from reviosa.model import checkpoint
from reviosa.model import sam as sam_ops
from reviosa.model.attention import special_token_attention
from reviosa.model.batch import ReviosaBatch
from reviosa.model.config import ModelConfig
from reviosa.model.losses import attention_bce, mask_losses, patch_masks
from reviosa.model.mllm import add_lora, build_mllm
from reviosa.model.shared_token import equalize_seg_rows, tie_seg_tokens
from reviosa.model.tokenizer import IMG_CONTEXT, SEG_ACT, SEG_TAR, SEG_TOKENS, token_ids


@dataclass
class ReviosaOutput:
    """Total loss, its weighted-free parts, and the low-resolution mask logits per role."""

    loss: torch.Tensor | None
    losses: dict[str, torch.Tensor] = field(default_factory=dict)
    actor_logits: torch.Tensor | None = None    # (B, E, T, h, w)
    target_logits: torch.Tensor | None = None   # (B, E, T, h, w), zeros for expressions without a target


@dataclass
class SegTokens:
    """Positions of the special tokens and which (sample, expression) each belongs to."""

    act_b: torch.Tensor
    act_pos: torch.Tensor
    tar_b: torch.Tensor
    tar_pos: torch.Tensor
    tar_e: torch.Tensor


def _check_answer_fits(config: ModelConfig, tokenizer) -> None:
    """Refuse a generation budget too short to ever emit the interaction answer's ``[SEG_TAR]`` (+ stop token)."""
    longest = max(config.prompt.answers_interaction, key=lambda a: len(tokenizer.encode(a, add_special_tokens=False)))
    need = len(tokenizer.encode(longest, add_special_tokens=False)) + 1
    if config.inference.max_new_tokens < need:
        raise ValueError(f"inference.max_new_tokens ({config.inference.max_new_tokens}) is shorter than the "
                         f"interaction answer {longest!r} plus the stop token ({need} "
                         "tokens with this tokenizer): generated answers could never reach [SEG_TAR]")


class ReviosaModel(nn.Module):
    """The MLLM (PEFT-wrapped InternVL), the projection into SAM2's prompt space, and SAM2."""

    def __init__(self, config: ModelConfig, mllm: nn.Module, tokenizer, sam: nn.Module):
        super().__init__()
        self.config = config
        self.mllm = mllm
        self.tokenizer = tokenizer
        self.sam = sam
        # Set by the trainer during ``mask_only_steps``: text and AML terms weigh 0 (they stay in the graph).
        self.mask_only = False
        hidden = self.lm.config.text_config.hidden_size
        self.projection = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(inplace=True),
                                        nn.Linear(hidden, sam.hidden_dim), nn.Dropout(config.projection_dropout))
        self.token_ids = token_ids(tokenizer)
        _check_answer_fits(config, tokenizer)

    @classmethod
    def from_config(cls, cfg: ModelConfig, *, device: str | torch.device = "cpu",
                    load_base: bool = True) -> "ReviosaModel":
        """A model from a config: real weights where the config names them (unless ``load_base`` is off), random
        elsewhere."""
        mllm_path = checkpoint.fetch(cfg.mllm.pretrained) if (cfg.mllm.pretrained and load_base) else None
        base, tokenizer = build_mllm(cfg, mllm_path)
        base.requires_grad_(False)
        seg_ids = [tokenizer.convert_tokens_to_ids(t) for t in SEG_TOKENS]
        mllm = add_lora(base, cfg, seg_ids)
        sam = sam_ops.build_sam2(cfg.sam2)
        if cfg.sam2.checkpoint and load_base:
            checkpoint.load_sam2_weights(sam, cfg.sam2.checkpoint)
        sam_ops.freeze_for_training(sam)
        model = cls(cfg, mllm, tokenizer, sam)
        if cfg.shared_seg_token:
            tie_seg_tokens(model)
        return model.to(device)

    @classmethod
    def from_pretrained(cls, path_or_uri: str | os.PathLike, *, device: str | torch.device = "cpu",
                        cache_dir: str | os.PathLike | None = None, config: ModelConfig | None = None,
                        overrides: Sequence[str] = ()) -> "ReviosaModel":
        """Load a folder or ``s3://`` URI written by ``save_pretrained`` (safetensors only).

        ``config`` replaces the saved config and ``overrides`` (``key=value``) change it; the weights must fit the
        model it describes (a changed shape is a ``CheckpointError`` naming the weight).
        """
        saved = checkpoint.read_pretrained(path_or_uri, cache_dir=cache_dir, config=config, overrides=overrides)
        model = cls.from_config(saved.config, load_base=True)
        checkpoint.load_weights(model, saved)
        if saved.config.shared_seg_token:
            # weights trained with two tokens (a warm start, say) load untied: the ablation needs one token
            equalize_seg_rows(model)
        return model.to(device)

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write config, tokenizer and safetensors weights to ``directory`` (atomically); returns its path."""
        return checkpoint.save_pretrained(self, directory)

    @property
    def lm(self):
        """The InternVL model inside the PEFT wrapper (LoRA layers are in place)."""
        return self.mllm.base_model.model

    @property
    def language_model(self):
        """The Qwen2 decoder stack."""
        return self.lm.model.language_model

    def forward(self, batch: ReviosaBatch) -> ReviosaOutput:
        """Teacher-forced pass: LM loss, masks for every special token on every frame, mask and attention losses."""
        # Every layer's hidden states only when AML reads attention from them; without heads none is computed.
        out = self.lm.model(input_ids=batch.input_ids, pixel_values=batch.pixel_values,
                            attention_mask=batch.attention_mask, position_ids=batch.position_ids,
                            output_hidden_states=bool(self.config.loss.aml_heads), use_cache=False)
        last = out.last_hidden_state
        losses: dict[str, torch.Tensor] = {"text": self.text_loss(last, batch.labels)}
        tokens = self.seg_tokens(batch)
        b, e = batch.has_target.shape
        t = batch.num_frames
        act_emb = self.projection(last[tokens.act_b, tokens.act_pos])              # (B·E, D), (b, e) order
        tar_emb = self.projection(last[tokens.tar_b, tokens.tar_pos])              # (n_tar, D)

        feats, _, sizes = sam_ops.frame_features(self.sam, batch.sam_images.to(self._sam_dtype))
        pix = sam_ops.no_memory_features(self.sam, feats, sizes)
        high = sam_ops.high_res_maps(feats, sizes)
        frames = torch.arange(t, device=pix.device)
        act_frames = (torch.arange(b, device=pix.device).repeat_interleave(e)[:, None] * t + frames).flatten()
        tar_frames = (tokens.tar_b[:, None] * t + frames).flatten()
        idx = torch.cat([act_frames, tar_frames])
        lang = torch.cat([act_emb.repeat_interleave(t, 0), tar_emb.repeat_interleave(t, 0)])
        res = sam_ops.decode(self.sam, pix[idx], [h[idx] for h in high], lang)
        logits = res["low_res"]
        n_act = act_frames.numel()
        act_logits = logits[:n_act].view(b, e, t, *logits.shape[-2:])
        target_logits = act_logits.new_zeros(act_logits.shape)
        target_logits[tokens.tar_b, tokens.tar_e] = logits[n_act:].view(-1, t, *logits.shape[-2:])

        if batch.actor_masks is not None:
            gt_act = batch.actor_masks.reshape(-1, 1, *batch.actor_masks.shape[-2:])
            gt_tar = batch.target_masks[tokens.tar_b, tokens.tar_e].reshape(-1, 1, *batch.target_masks.shape[-2:])
            bce_a, dice_a = mask_losses(logits[:n_act], gt_act, self.config.loss)
            bce_t, dice_t = mask_losses(logits[n_act:], gt_tar, self.config.loss)
            if self.config.loss.target_normalization == "official":
                # averaged over every (expression, frame) item, as the official code does, not over target items
                share = (logits.size(0) - n_act) / n_act
                bce_t, dice_t = bce_t * share, dice_t * share
            losses.update(mask_bce_actor=bce_a, mask_dice_actor=dice_a, mask_bce_target=bce_t, mask_dice_target=dice_t)
            if self.config.loss.aml_heads:
                losses["aml"] = self._aml(out.hidden_states, batch, tokens)
        w = self.config.loss
        weights = {"text": w.text_weight, "mask_bce_actor": w.bce_weight, "mask_bce_target": w.bce_weight,
                   "mask_dice_actor": w.dice_weight, "mask_dice_target": w.dice_weight, "aml": w.aml_weight}
        if self.mask_only:
            weights.update(text=0.0, aml=0.0)
        # The IoU and object-score heads get no supervision (as in ReVIOSa) but must stay in the graph, or
        # DDP/ZeRO would wait for their gradients forever.
        total = sum(weights[k] * v for k, v in losses.items())
        total = total + 0.0 * (res["ious"].sum() + res["object_score_logits"].sum())
        return ReviosaOutput(loss=total, losses=losses, actor_logits=act_logits, target_logits=target_logits)

    @property
    def _sam_dtype(self) -> torch.dtype:
        return next(self.sam.parameters()).dtype

    def text_loss(self, last: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """LM cross-entropy of the supervised answer tokens, the answer-form decision weighted by ``form_weight``."""
        # Project only supervised positions: full-vocabulary logits for every token would dominate memory.
        target = labels[:, 1:]
        sup = target != -100
        if not sup.any():
            return last.sum() * 0.0
        logits = self.lm.lm_head(last[:, :-1][sup])
        ce = F.cross_entropy(logits.float(), target[sup], reduction="none")
        # The token after [SEG_ACT] decides the answer's form (a target or none): one token among ~10 per answer,
        # it is the one the demo's fine-tuning got wrong (singles answered with [SEG_TAR]).
        weight = torch.ones_like(ce)
        weight[(labels[:, :-1] == self.token_ids[SEG_ACT])[sup]] = self.config.loss.form_weight
        return (weight * ce).sum() / weight.sum()

    def seg_tokens(self, batch: ReviosaBatch) -> SegTokens:
        """Positions of every [SEG_ACT] and [SEG_TAR] in the batch, with the expression each belongs to."""
        ids = batch.input_ids
        b, e = batch.has_target.shape
        act = (ids == self.token_ids[SEG_ACT]).nonzero()
        tar = (ids == self.token_ids[SEG_TAR]).nonzero()
        counts = torch.bincount(act[:, 0], minlength=b)
        if (counts != e).any():
            raise ValueError(f"every sample needs one {SEG_ACT} per expression ({e}); found {counts.tolist()}")
        act_pos = act[:, 1].view(b, e)
        # A [SEG_TAR] belongs to the expression whose [SEG_ACT] precedes it.
        tar_e = (act_pos[tar[:, 0]] < tar[:, 1:2]).sum(1) - 1
        got = torch.zeros_like(batch.has_target)
        got[tar[:, 0], tar_e.clamp(min=0)] = True
        if (tar_e < 0).any() or len(tar) != int(got.sum()) or not torch.equal(got, batch.has_target):
            raise ValueError(f"{SEG_TAR} tokens must follow the {SEG_ACT} of exactly the interaction expressions "
                             f"(has_target={batch.has_target.tolist()})")
        return SegTokens(act_b=act[:, 0], act_pos=act[:, 1], tar_b=tar[:, 0], tar_pos=tar[:, 1], tar_e=tar_e)

    def vision_columns(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(B, T·tokens_per_frame) positions of the vision tokens, frame-major."""
        mask = input_ids == self.token_ids[IMG_CONTEXT]
        n = mask.sum(1)
        if (n != n[0]).any():
            raise ValueError(f"samples hold different numbers of vision tokens: {n.tolist()}")
        return mask.nonzero()[:, 1].view(input_ids.size(0), -1)

    def special_attention(self, hidden_states, batch: ReviosaBatch, rows_b: torch.Tensor, rows_pos: torch.Tensor,
                          layer: int, heads: list[int], log: bool = False) -> torch.Tensor:
        """Attention (n_rows, heads, T·g²) from the given token rows to the vision tokens at one layer (its
        log-probabilities with ``log``)."""
        logp = special_token_attention(self.language_model, layer, hidden_states[layer], batch.position_ids,
                                       batch.attention_mask, rows_b, rows_pos, heads)
        cols = self.vision_columns(batch.input_ids)[rows_b]                       # (n_rows, V)
        logp = torch.gather(logp, 2, cols[:, None, :].expand(-1, logp.size(1), -1))
        return logp if log else logp.exp()

    def seg_attention(self, hidden_states, batch: ReviosaBatch, tokens: SegTokens, heads, log: bool = False
                      ) -> dict[tuple[int, int], torch.Tensor]:
        """Per (layer, head), attention (n_act + n_tar, T·g²) of every [SEG_ACT] row, then every [SEG_TAR] row."""
        rows_b = torch.cat([tokens.act_b, tokens.tar_b])
        rows_pos = torch.cat([tokens.act_pos, tokens.tar_pos])
        by_layer: dict[int, list[int]] = {}
        for layer, head in heads:
            by_layer.setdefault(int(layer), []).append(int(head))
        out = {}
        for layer, layer_heads in by_layer.items():
            att = self.special_attention(hidden_states, batch, rows_b, rows_pos, layer, layer_heads, log=log)
            for i, head in enumerate(layer_heads):
                out[layer, head] = att[:, i]
        return out

    def _aml(self, hidden_states, batch: ReviosaBatch, tokens: SegTokens) -> torch.Tensor:
        grid = self.config.mllm.grid
        rule = self.config.loss.aml_patch_rule
        gt_act = patch_masks(batch.actor_masks, grid, rule).flatten(2)              # (B, E, T·g²)
        gt_act = gt_act.view(-1, gt_act.size(-1))
        gt_tar = patch_masks(batch.target_masks, grid, rule).flatten(2)[tokens.tar_b, tokens.tar_e]
        n_act = tokens.act_b.numel()
        terms = []
        for att in self.seg_attention(hidden_states, batch, tokens, self.config.loss.aml_heads, log=True).values():
            term = attention_bce(att[:n_act], gt_act)
            if n_act < att.size(0):
                term = term + attention_bce(att[n_act:], gt_tar)
            terms.append(term)
        return torch.stack(terms).mean()
