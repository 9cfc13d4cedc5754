"""Video frames as the vision towers take them: square-resized, ImageNet-normalised float tensors."""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def imagenet_frames(frames: np.ndarray | torch.Tensor, size: int, mode: Literal["bilinear", "bicubic"]) -> torch.Tensor:
    """RGB uint8 (T, H, W, 3) → ImageNet-normalised float (T, 3, size, size), antialiased square resize."""
    # one frame at a time: a float copy of every full-resolution frame at once is what a server runs out of
    x = torch.stack([F.interpolate(torch.as_tensor(f).permute(2, 0, 1)[None].float().div_(255.0), size=(size, size),
                                   mode=mode, align_corners=False, antialias=True)[0]
                     for f in np.asarray(frames)])
    if mode == "bicubic":
        x = x.clamp_(0, 1)  # bicubic overshoots at edges
    return (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
