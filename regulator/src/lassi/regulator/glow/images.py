"""Images <-> Glow inputs: quantise to n_bits and centre (Glow, Sec. 5: 5-bit CelebA-HQ)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def preprocess(images: np.ndarray | Tensor, n_bits: int = 5) -> Tensor:
    """uint8 images [N, H, W, C] -> float32 [N, C, H, W] = floor(x / 2**(8-n)) / 2**n - 0.5."""
    t = torch.as_tensor(images)
    if t.dtype != torch.uint8 or t.dim() != 4:
        raise ValueError(f"expected uint8 [N, H, W, C] images, got {t.dtype} {tuple(t.shape)}")
    quantised = torch.div(t.to(torch.int64), 2 ** (8 - n_bits), rounding_mode="floor")
    x = quantised.to(torch.float32) / 2**n_bits - 0.5
    return x.permute(0, 3, 1, 2).contiguous()


def postprocess(x: Tensor) -> np.ndarray:
    """float [N, C, H, W] in [-0.5, 0.5] -> uint8 numpy [N, H, W, C] (clamp, +0.5, *255)."""
    img = (x.detach().clamp(-0.5, 0.5) + 0.5) * 255.0
    img = img.round().to(torch.uint8).permute(0, 2, 3, 1)
    return img.cpu().numpy()
