"""Segmentation losses (point-sampled BCE + dice) and the attention-mask loss (AML)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from reviosa.model.config import LossConfig


def point_sample(x: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Bilinear values of (N, 1, H, W) maps at (N, P, 2) points in [0, 1]² → (N, P)."""
    return F.grid_sample(x, 2.0 * points.unsqueeze(2) - 1.0, align_corners=False).squeeze(-1).squeeze(1)


def uncertain_points(logits: torch.Tensor, cfg: LossConfig) -> torch.Tensor:
    """Points where the prediction is least certain, plus uniform ones (as in PointRend/Mask2Former)."""
    n, p = logits.size(0), cfg.num_points
    k = int(p * cfg.oversample_ratio)
    cand = torch.rand(n, k, 2, device=logits.device)
    uncertainty = -point_sample(logits.detach(), cand).abs()
    n_imp = int(cfg.importance_sample_ratio * p)
    idx = uncertainty.topk(n_imp, dim=1).indices
    chosen = torch.gather(cand, 1, idx.unsqueeze(-1).expand(-1, -1, 2))
    return torch.cat([chosen, torch.rand(n, p - n_imp, 2, device=logits.device)], dim=1)


def mask_losses(logits: torch.Tensor, gt: torch.Tensor, cfg: LossConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean BCE, mean dice) of (N, 1, h, w) logits against (N, 1, h, w) {0,1} masks; zeros when N = 0."""
    if logits.size(0) == 0:
        zero = logits.sum() * 0.0
        return zero, zero
    logits, gt = logits.float(), gt.float()
    if cfg.num_points > 0:
        with torch.no_grad():
            pts = uncertain_points(logits, cfg)
            gt_p = point_sample(gt, pts)
        pred_p = point_sample(logits, pts)
    else:
        pred_p, gt_p = logits.flatten(1), gt.flatten(1)
    bce = F.binary_cross_entropy_with_logits(pred_p, gt_p)
    prob = pred_p.sigmoid()
    dice = 1.0 - (2.0 * (prob * gt_p).sum(1) + 1.0) / (prob.sum(1) + gt_p.sum(1) + 1.0)
    return bce, dice.mean()


def attention_bce(log_probs: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """BCE of raw attention probabilities, given as log-probabilities, against {0,1} patch masks, in fp32.

    Taking log p straight from the log-softmax keeps the gradient of an object patch whose attention is tiny (a
    clamp of p, as at 1e-6, would zero it for most patches early in training); log(1 - p) is clamped at -100 like
    ``F.binary_cross_entropy`` so a patch holding all the attention gives a finite loss.
    """
    lp = log_probs.float()
    # log(1 - exp(lp)) without cancellation: expm1 near p = 1, log1p near p = 0.
    log_not = torch.where(lp > -0.6931, torch.log(-torch.expm1(lp)), torch.log1p(-torch.exp(lp))).clamp(min=-100.0)
    g = gt.float()
    return -(g * lp + (1.0 - g) * log_not).mean()


def patch_masks(masks: torch.Tensor, grid: int, rule: str = "nearest") -> torch.Tensor:
    """(..., h, w) masks → (..., grid²) patch masks, row-major like the vision tokens.

    ``nearest`` samples one pixel per patch (the official ReVIOSa); ``any`` marks every patch the object touches.
    """
    lead = masks.shape[:-2]
    x = masks.reshape(-1, 1, *masks.shape[-2:]).float()
    if rule == "nearest":
        small = F.interpolate(x, size=(grid, grid), mode="nearest")
    elif rule == "any":
        small = F.adaptive_max_pool2d(x, (grid, grid))
    else:
        raise ValueError(f"unknown patch rule {rule!r} (nearest | any)")
    return small.reshape(*lead, grid * grid)
