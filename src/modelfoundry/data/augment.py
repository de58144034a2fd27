"""On-the-fly augmentation of training batches (never validation or test). Uses torch's global RNG,
which checkpoints save, so a resumed run draws the same augmentations."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..config import AugmentConfig


def is_active(cfg: AugmentConfig) -> bool:
    return bool(cfg.image_flip or cfg.image_crop_padding or cfg.text_token_dropout or cfg.tabular_noise)


def augment_batch(batch: dict[str, torch.Tensor], cfg: AugmentConfig) -> dict[str, torch.Tensor]:
    out = dict(batch)
    if "image" in out and (cfg.image_flip or cfg.image_crop_padding):
        img = out["image"]
        if cfg.image_flip:
            flip = torch.rand(img.shape[0]) < 0.5
            img = torch.where(flip.view(-1, 1, 1, 1), img.flip(-1), img)
        if cfg.image_crop_padding:
            p = cfg.image_crop_padding
            h, w = img.shape[-2:]
            padded = F.pad(img, (p, p, p, p), mode="reflect" if p < min(h, w) else "constant")
            dy, dx = torch.randint(0, 2 * p + 1, (2,)).tolist()
            img = padded[..., dy: dy + h, dx: dx + w]
        out["image"] = img
    if cfg.text_token_dropout:
        for key in [k for k in out if k.startswith("text:")]:
            ids = out[key]
            drop = (torch.rand(ids.shape) < cfg.text_token_dropout) & (ids > 4)  # never drop [PAD]/[CLS]/...
            out[key] = ids.masked_fill(drop, 1)  # [UNK]
    if cfg.tabular_noise and "numeric" in out:
        out["numeric"] = out["numeric"] + cfg.tabular_noise * torch.randn_like(out["numeric"])
    return out
