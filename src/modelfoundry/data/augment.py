"""On-the-fly augmentation of training batches (never validation or test). Uses torch's global RNG,
which checkpoints save, so a resumed run draws the same augmentations."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..config import AugmentConfig


def is_active(cfg: AugmentConfig) -> bool:
    return bool(cfg.image_flip or cfg.image_crop_padding or cfg.text_token_dropout or cfg.tabular_noise
                or cfg.text_swap or cfg.text_delete or cfg.sequence_jitter or cfg.sequence_scaling)


def _inner(ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Positions strictly inside each text: not the first, not the last, not padding."""
    pos = torch.arange(ids.shape[1])[None, :]
    return (pos > 0) & (pos < lengths[:, None] - 1)


def swap_tokens(ids: torch.Tensor, lengths: torch.Tensor, p: float) -> torch.Tensor:
    """Swap token i with i+1 with probability p, both inside the text; swaps never overlap."""
    inner = _inner(ids, lengths)
    start = (torch.rand(ids.shape) < p) & inner & torch.roll(inner, -1, 1)
    start[:, -1] = False
    start[:, 1:] &= ~start[:, :-1].clone()  # i and i+1 both starting would overlap: keep the first
    perm = torch.arange(ids.shape[1]).expand_as(ids).clone()
    perm[start] += 1
    follow = torch.roll(start, 1, 1)
    follow[:, 0] = False
    perm[follow] -= 1
    return ids.gather(1, perm)


def delete_tokens(ids: torch.Tensor, lengths: torch.Tensor, p: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Delete inner tokens with probability p; the rest move left, lengths shrink, the tail is padding (0)."""
    gone = (torch.rand(ids.shape) < p) & _inner(ids, lengths)
    order = torch.argsort(gone.int(), dim=1, stable=True)
    out = ids.gather(1, order)
    new_len = lengths - gone.sum(1)
    out[torch.arange(ids.shape[1])[None, :] >= new_len[:, None]] = 0
    return out, new_len


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
    for key in [k for k in out if k.startswith("text:")]:
        lkey = f"len:{key[5:]}"
        if lkey not in out or f"segment:{key[5:]}" in out:  # sentence pairs keep their segment layout
            continue
        if cfg.text_swap:
            out[key] = swap_tokens(out[key], out[lkey], cfg.text_swap)
        if cfg.text_delete:
            out[key], out[lkey] = delete_tokens(out[key], out[lkey], cfg.text_delete)
    if "sequence" in out and (cfg.sequence_jitter or cfg.sequence_scaling):
        seq = out["sequence"]
        if cfg.sequence_scaling:
            seq = seq * (1 + cfg.sequence_scaling * torch.randn(seq.shape[0], 1, seq.shape[2]))
        if cfg.sequence_jitter:
            seq = seq + cfg.sequence_jitter * torch.randn_like(seq)
        out["sequence"] = seq
    if cfg.tabular_noise and "numeric" in out:
        out["numeric"] = out["numeric"] + cfg.tabular_noise * torch.randn_like(out["numeric"])
    return out
