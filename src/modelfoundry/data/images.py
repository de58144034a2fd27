"""Images: decode one value (a path, bytes, or an array) into a [C, H, W] float tensor, with a pixel cap checked
before decoding."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

MAX_IMAGE_PIXELS = 40_000_000
"""Larger images are refused before they are decoded (a small PNG can declare a huge canvas: a decompression bomb)."""


def load_image(value: Any, channels: int, size: tuple[int, int]) -> torch.Tensor:
    """A path, the bytes of an image file, or an array -> float tensor [C, H, W] in [0, 1], resized in torch."""
    if isinstance(value, (str, Path, bytes)):
        import io

        from PIL import Image

        with Image.open(io.BytesIO(value) if isinstance(value, bytes) else value) as im:
            if im.width * im.height > MAX_IMAGE_PIXELS:
                raise ValueError(f"{im.width}x{im.height} pixels; the limit is {MAX_IMAGE_PIXELS:,}")
            im = im.convert("L" if channels == 1 else "RGB")
            arr = np.asarray(im, dtype=np.float32) / 255.0
    else:
        arr = np.asarray(value, dtype=np.float32)
        arr = arr / arr.max() if arr.max() > 1.0 else arr
    t = torch.from_numpy(np.ascontiguousarray(arr))
    if t.ndim == 2:
        t = t.unsqueeze(0)
    elif t.ndim == 3 and t.shape[-1] in (1, 3, 4) and t.shape[0] not in (1, 3):
        t = t.permute(2, 0, 1)
    if t.shape[0] != channels:
        t = t[:3].mean(0, keepdim=True) if channels == 1 else t[:1].expand(3, -1, -1) if t.shape[0] == 1 else t[:3]
    if tuple(t.shape[1:]) != tuple(size):
        t = F.interpolate(t.unsqueeze(0), size=tuple(size), mode="bilinear", antialias=True, align_corners=False)[0]
    return t
