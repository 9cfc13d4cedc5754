"""SAM2 (``sam2`` package) built from a typed config, driven by language embeddings instead of clicks."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from reviosa.model.config import SAM2Config
from reviosa.model.frames import imagenet_frames

# Model flags that differ between the releases (configs/sam2/*.yaml vs configs/sam2.1/*.yaml of the sam2 package;
# every other flag is the same in all eight official configs). The 2.1 flags add the weights no_obj_embed_spatial and
# obj_ptr_tpos_proj.*, so a checkpoint of one release does not load into the other's model.
VERSION_FLAGS = {
    "2": dict(add_tpos_enc_to_obj_ptrs=False, proj_tpos_enc_in_obj_ptrs=False, use_signed_tpos_enc_to_obj_ptrs=False,
              no_obj_embed_spatial=False),
    "2.1": dict(add_tpos_enc_to_obj_ptrs=True, proj_tpos_enc_in_obj_ptrs=True, use_signed_tpos_enc_to_obj_ptrs=True,
                no_obj_embed_spatial=True),
}


def build_sam2(cfg: SAM2Config):
    """A ``SAM2Base`` with the flags of ``cfg.version``'s official configs and the sizes of ``cfg`` (random weights)."""
    from sam2.modeling.backbones.hieradet import Hiera
    from sam2.modeling.backbones.image_encoder import FpnNeck, ImageEncoder
    from sam2.modeling.memory_attention import MemoryAttention, MemoryAttentionLayer
    from sam2.modeling.memory_encoder import CXBlock, Fuser, MaskDownSampler, MemoryEncoder
    from sam2.modeling.position_encoding import PositionEmbeddingSine
    from sam2.modeling.sam.transformer import RoPEAttention
    from sam2.modeling.sam2_base import SAM2Base

    h = cfg.trunk
    e, d, m = h["embed_dim"], cfg.d_model, cfg.mem_dim
    feat = [cfg.image_size // 16] * 2
    trunk = Hiera(embed_dim=e, num_heads=h["num_heads"], stages=tuple(h["stages"]),
                  global_att_blocks=tuple(h["global_att_blocks"]), window_spec=tuple(h["window_spec"]),
                  window_pos_embed_bkg_spatial_size=tuple(h["window_pos_embed_bkg_spatial_size"]))
    neck = FpnNeck(position_encoding=PositionEmbeddingSine(num_pos_feats=d, normalize=True, temperature=10000),
                   d_model=d, backbone_channel_list=[8 * e, 4 * e, 2 * e, e], fpn_top_down_levels=[2, 3],
                   fpn_interp_model="nearest")

    def rope(**extra):
        return RoPEAttention(rope_theta=10000.0, feat_sizes=feat, embedding_dim=d, num_heads=1, downsample_rate=1,
                             dropout=0.1, **extra)

    layer = MemoryAttentionLayer(activation="relu", dim_feedforward=cfg.memory_attention_ff, dropout=0.1,
                                 pos_enc_at_attn=False, self_attention=rope(), d_model=d,
                                 pos_enc_at_cross_attn_keys=True, pos_enc_at_cross_attn_queries=False,
                                 cross_attention=rope(rope_k_repeat=True, kv_in_dim=m))
    memory_attention = MemoryAttention(d_model=d, pos_enc_at_input=True, layer=layer,
                                       num_layers=cfg.memory_attention_layers)
    memory_encoder = MemoryEncoder(
        out_dim=m, in_dim=d,
        position_encoding=PositionEmbeddingSine(num_pos_feats=m, normalize=True, temperature=10000),
        mask_downsampler=MaskDownSampler(embed_dim=d, kernel_size=3, stride=2, padding=1),
        fuser=Fuser(CXBlock(dim=d, kernel_size=7, padding=3, layer_scale_init_value=1e-6, use_dwconv=True),
                    num_layers=cfg.fuser_layers))
    return SAM2Base(
        image_encoder=ImageEncoder(trunk=trunk, neck=neck, scalp=1), memory_attention=memory_attention,
        memory_encoder=memory_encoder, num_maskmem=cfg.num_maskmem, image_size=cfg.image_size,
        sigmoid_scale_for_mem_enc=20.0, sigmoid_bias_for_mem_enc=-10.0, use_mask_input_as_output_without_sam=True,
        directly_add_no_mem_embed=True, use_high_res_features_in_sam=True, multimask_output_in_sam=True,
        iou_prediction_use_sigmoid=True, use_obj_ptrs_in_encoder=True, only_obj_ptrs_in_the_past_for_eval=True,
        pred_obj_scores=True, pred_obj_scores_mlp=True, fixed_no_obj_ptr=True, multimask_output_for_tracking=True,
        use_multimask_token_for_obj_ptr=True, multimask_min_pt_num=0, multimask_max_pt_num=1,
        use_mlp_for_obj_ptr_proj=True, **VERSION_FLAGS[cfg.version])


class _WeightsOnMeta(TorchFunctionMode):
    """Tensor factories called without a device allocate on the meta device (shapes only, no memory, no init).

    ``torch.device("meta")`` is not enough: it also moves helper tensors such as Hiera's drop-path schedule, which
    the constructors read back with ``.item()``; those come from ``linspace``/``arange``, left alone here.
    """

    _FACTORIES = frozenset({torch.empty, torch.zeros, torch.ones, torch.randn, torch.rand, torch.full})

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func in self._FACTORIES and kwargs.get("device") is None:
            kwargs["device"] = "meta"
        return func(*args, **kwargs)


def weights_on_meta() -> TorchFunctionMode:
    """A context in which SAM2 modules (ours or the ``sam2`` package's) are built with meta weights."""
    return _WeightsOnMeta()


def sam2_shapes(cfg: SAM2Config) -> dict[str, tuple[int, ...]]:
    """Weight name → shape of the SAM2 that ``build_sam2(cfg)`` makes, without allocating it."""
    with weights_on_meta():
        sam = build_sam2(cfg)
    return {k: tuple(v.shape) for k, v in sam.state_dict().items()}


def freeze_for_training(sam) -> None:
    """Freeze everything but the mask decoder (its ``conv_s0/conv_s1`` included)."""
    for name, p in sam.named_parameters():
        p.requires_grad_(name.startswith("sam_mask_decoder."))


def preprocess_frames(frames: np.ndarray | torch.Tensor, size: int) -> torch.Tensor:
    """RGB uint8 (T, H, W, 3) → ImageNet-normalised float (T, 3, size, size), direct square resize."""
    return imagenet_frames(frames, size, "bilinear")


def frame_features(sam, images: torch.Tensor):
    """Backbone features of a frame batch: the frozen trunk without a graph, ``conv_s0/s1`` with gradient."""
    with torch.no_grad():
        out = sam.image_encoder(images)
    fpn = list(out["backbone_fpn"])
    fpn[0] = sam.sam_mask_decoder.conv_s0(fpn[0])
    fpn[1] = sam.sam_mask_decoder.conv_s1(fpn[1])
    out = {**out, "backbone_fpn": fpn}
    _, feats, pos, sizes = sam._prepare_backbone_features(out)
    return feats, pos, sizes


def high_res_maps(feats: Sequence[torch.Tensor], sizes) -> list[torch.Tensor]:
    """The two high-resolution levels as (B, C, H, W) maps for the decoder."""
    return [x.permute(1, 2, 0).reshape(x.size(1), x.size(2), *s) for x, s in zip(feats[:-1], sizes[:-1])]


def no_memory_features(sam, feats: Sequence[torch.Tensor], sizes) -> torch.Tensor:
    """Top-level features of a conditioning frame: ``no_mem_embed`` added, as (B, C, h, w)."""
    x = feats[-1] + sam.no_mem_embed
    return x.permute(1, 2, 0).reshape(x.size(1), x.size(2), *sizes[-1])


def decode(sam, pix_feat: torch.Tensor, high_res: list[torch.Tensor], language: torch.Tensor | None,
           multimask: bool = True) -> dict[str, torch.Tensor]:
    """Prompt encoder + mask decoder with the language embedding as an extra sparse token.

    Unlike ``SAM2Base._forward_sam_heads`` the masks are never overwritten where the (unsupervised) object-score
    head says "absent": that would cut the gradient and blank outputs of a model still learning.
    """
    b = pix_feat.size(0)
    device = pix_feat.device
    coords = torch.zeros(b, 1, 2, device=device)
    labels = -torch.ones(b, 1, dtype=torch.int32, device=device)
    dtype = next(sam.parameters()).dtype
    # A bf16/fp16 SAM2 (DeepSpeed casts the whole module) still gets float32 here: SAM2 encodes points in float32
    # and builds its dense encoding grid in float32 (autocast runs those products in the weights' dtype), and its FPN
    # upsamples the top level in float32.
    with torch.autocast(device.type, dtype=dtype, enabled=dtype in (torch.bfloat16, torch.float16)):
        sparse, dense = sam.sam_prompt_encoder(points=(coords, labels), boxes=None, masks=None)
        image_pe = sam.sam_prompt_encoder.get_dense_pe()
    sparse, dense, image_pe = sparse.to(dtype), dense.to(dtype), image_pe.to(dtype)
    if language is not None:
        sparse = torch.cat([sparse, language.to(dtype).unsqueeze(1)], dim=1)
    masks, ious, tokens, obj_logits = sam.sam_mask_decoder(
        image_embeddings=pix_feat.to(dtype), image_pe=image_pe,
        sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, multimask_output=multimask,
        repeat_image=False, high_res_features=[h.to(dtype) for h in high_res])
    masks = masks.float()
    token = tokens[:, 0]
    if multimask:
        best = ious.argmax(dim=-1)
        rows = torch.arange(b, device=device)
        masks = masks[rows, best].unsqueeze(1)
        if tokens.size(1) > 1:
            token = tokens[rows, best]
    else:
        masks = masks[:, :1]
    obj_ptr = sam.obj_ptr_proj(token)
    appearing = (obj_logits > 0).float()
    obj_ptr = appearing * obj_ptr + (1 - appearing) * sam.no_obj_ptr
    return {"low_res": masks, "ious": ious, "obj_ptr": obj_ptr, "object_score_logits": obj_logits}


@torch.no_grad()
def propagate(sam, n_frames: int, get_frames: Callable[[int], torch.Tensor], language: torch.Tensor,
              cond_frames: Sequence[int], out_size: tuple[int, int]) -> np.ndarray:
    """Segment a whole video with SAM2 memory: language-prompted conditioning frames, then tracking.

    ``language`` is (K, D), one row per object track; ``get_frames(i)`` returns the normalised (1, 3, S, S)
    frame ``i``. Frames are encoded one at a time and memories beyond SAM2's reach are dropped, so memory use does
    not grow with the video length. Returns bool masks (K, T, H, W) at ``out_size``.
    """
    k = language.size(0)
    cond = sorted(set(int(i) for i in cond_frames))
    if not cond or cond[0] < 0 or cond[-1] >= n_frames:
        raise ValueError(f"conditioning frames {cond_frames} must lie in [0, {n_frames})")
    state = {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}
    results: dict[int, torch.Tensor] = {}

    def encode(i: int):
        feats, pos, sizes = frame_features(sam, get_frames(i))
        return [f.expand(-1, k, -1) for f in feats], [p.expand(-1, k, -1) for p in pos], sizes

    def store(i: int, feats, sizes, out: dict, bucket: str) -> None:
        high = F.interpolate(out["low_res"], size=(sam.image_size, sam.image_size), mode="bilinear",
                             align_corners=False)
        mem, mem_pos = sam._encode_new_memory(current_vision_feats=feats, feat_sizes=sizes,
                                              pred_masks_high_res=high,
                                              object_score_logits=out["object_score_logits"], is_mask_from_pts=True)
        state[bucket][i] = {"maskmem_features": mem, "maskmem_pos_enc": mem_pos, "obj_ptr": out["obj_ptr"]}
        results[i] = out["low_res"]

    for i in cond:
        feats, _, sizes = encode(i)
        out = decode(sam, no_memory_features(sam, feats, sizes), high_res_maps(feats, sizes), language)
        store(i, feats, sizes, out, "cond_frame_outputs")
    keep = max(sam.num_maskmem, sam.max_obj_ptrs_in_encoder) + 1
    masks = np.zeros((k, n_frames, *out_size), dtype=bool)
    for i in range(n_frames):
        if i not in results:
            feats, pos, sizes = encode(i)
            pix = sam._prepare_memory_conditioned_features(
                frame_idx=i, is_init_cond_frame=False, current_vision_feats=feats[-1:],
                current_vision_pos_embeds=pos[-1:], feat_sizes=sizes[-1:], output_dict=state, num_frames=n_frames)
            out = decode(sam, pix, high_res_maps(feats, sizes), None, multimask=sam.multimask_output_for_tracking)
            store(i, feats, sizes, out, "non_cond_frame_outputs")
            state["non_cond_frame_outputs"].pop(i - keep, None)
        logits = F.interpolate(results.pop(i), size=out_size, mode="bilinear", align_corners=False)
        masks[:, i] = (logits[:, 0] > 0).cpu().numpy()
    return masks
