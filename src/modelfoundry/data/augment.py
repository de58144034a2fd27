"""Augmentation of the training split only (never validation or test).

On the fly, per batch (`Augmenter`): text character noise, swap/delete/synonym replacement/insertion, image flips, crops,
rotations and colour jitter, Gaussian noise on numeric features, time-series jitter, scaling, window slicing
and warping, mixup. Once, before training (`oversample`): SMOTE and its variants (imbalanced-learn). The batch
augmentations use torch's global RNG, which checkpoints save, so a resumed run draws the same augmentations.

Over ~400 lines on purpose: one function per augmentation, each short, and the order they apply in.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..core.paths import resolve_model_path
from .audio import spec_augment
from .config import AUGMENTS, AugmentConfig
from .text import pad_ids


def augmentation_kind(name: str) -> str | None:
    """The input kind a batch augmentation works on (from its field in AugmentConfig), or None for a setting."""
    return (AugmentConfig.model_fields[name].json_schema_extra or {}).get(AUGMENTS)


# every batch augmentation, read from the config class: a new field made with `augmentation(...)` is one, no list to
# keep in step
BATCH_OPTIONS = tuple(name for name in AugmentConfig.model_fields if augmentation_kind(name))
TEXT_OPTIONS = tuple(name for name in BATCH_OPTIONS if augmentation_kind(name) == "text")


def is_active(cfg: AugmentConfig) -> bool:
    return any(bool(getattr(cfg, k)) for k in BATCH_OPTIONS)


# the input an option works on: (feature key prefix, the input kind's name for a message)
NEEDS = {"image": ("image", "an image column"), "text": ("text:", "a text column"),
         "sequence": ("sequence", "a sequence (data.sequence windows or a list column)"),
         "numeric": ("numeric", "a numeric column"), "audio": ("audio", "an audio column"),
         "continuous": (("numeric", "image", "audio", "sequence"), "a numeric, image, audio or sequence input")}


def check_fits(cfg: AugmentConfig, feature_keys: list[str], task: str) -> None:
    """Refuse an augmentation that has nothing to work on (image_flip on a table) instead of silently doing
    nothing, and text augmentations on a causal LM (its targets are its own tokens: changing them corrupts them)."""
    on = [k for k in BATCH_OPTIONS if getattr(cfg, k)]
    kinds = sorted({k.split(":")[0] for k in feature_keys if not k.startswith(("len:", "segment:", "row"))})
    for opt in on:
        if task == "causal_lm":
            raise ValueError(f"data.augment.{opt}: does not apply to data.task causal_lm (the tokens are the targets)")
        need = NEEDS[augmentation_kind(opt)]
        if not any(k.startswith(need[0]) for k in feature_keys):
            raise ValueError(f"data.augment.{opt}: needs {need[1]}; this data's inputs are "
                             f"{', '.join(kinds) or 'none'}. Remove the option")


def special_ids(tokenizer) -> tuple[torch.Tensor, int | None]:
    """A tokenizer's own special-token ids ([PAD], [CLS], [SEP], <s>, ...) and its unknown token's id (None if it
    has none, as byte-level BPE)."""
    special = sorted(i for i, t in tokenizer.get_added_tokens_decoder().items() if t.special)
    unk = getattr(tokenizer.model, "unk_token", None)
    unk_id = tokenizer.token_to_id(unk) if unk else None
    return torch.tensor(special or [0], dtype=torch.long), unk_id


def token_dropout(ids: torch.Tensor, p: float, special: torch.Tensor, unk_id: int) -> torch.Tensor:
    """Replace each non-special token with the unknown token with probability p; padding (0) is never touched."""
    keep = torch.isin(ids, special.to(ids.device)) | (ids == 0)
    drop = (torch.rand(ids.shape) < p).to(ids.device) & ~keep
    return ids.masked_fill(drop, unk_id)


def _word(token: str) -> bool:
    """A whole word worth replacing: letters only (no subword piece, number or special token), 3+ characters,
    or a single CJK character."""
    if len(token) == 1 and "\u4e00" <= token <= "\u9fff":
        return True
    return len(token) >= 3 and token.isalpha()


def neighbour_table(vocab: dict[str, int], source: str = "minilm", k: int = 5) -> torch.Tensor:
    """For each id of `vocab` (a tokenizer's token -> id), the ids of its k nearest words by cosine similarity in
    the input embedding table of the pretrained model `source` ('minilm' = the embedded all-MiniLM-L6-v2, or a
    local model directory); -1 where a token has none (not a word, or unknown to the source model). Only words
    both vocabularies share take part, so a replacement is always a token this tokenizer has."""
    from transformers import AutoModel, AutoTokenizer

    path = resolve_model_path(source)
    src_vocab = AutoTokenizer.from_pretrained(path).get_vocab()
    emb = AutoModel.from_pretrained(path).get_input_embeddings().weight.detach().float()
    ours, theirs = [], []
    for token, i in vocab.items():
        j = src_vocab.get(token, src_vocab.get(token.lower()))
        if j is not None and _word(token):
            ours.append(i)
            theirs.append(j)
    table = torch.full((max(vocab.values()) + 1, k), -1, dtype=torch.long)
    if len(ours) <= k:
        return table
    vecs = F.normalize(emb[torch.tensor(theirs)], dim=1)
    ours_t, theirs_t = torch.tensor(ours), torch.tensor(theirs)
    for start in range(0, len(ours), 2048):
        sim = vecs[start: start + 2048] @ vecs.T
        rows = torch.arange(sim.shape[0])
        sim[rows, rows + start] = -2  # not itself
        sim[theirs_t[start: start + 2048, None] == theirs_t[None, :]] = -2  # nor its other casing
        table[ours_t[start: start + 2048]] = ours_t[sim.topk(k, dim=1).indices]
    return table


def replace_synonyms(ids: torch.Tensor, lengths: torch.Tensor, p: float, table: torch.Tensor) -> torch.Tensor:
    """Replace each inner word that has neighbours with one of them (uniformly) with probability p."""
    cand = table[ids.clamp(0, table.shape[0] - 1)]  # [B, L, k]
    has = (cand[..., 0] >= 0) & _inner(ids, lengths)
    pick = (torch.rand(ids.shape) < p) & has
    choice = cand.gather(2, torch.randint(0, cand.shape[2], (*ids.shape, 1))).squeeze(2)
    return torch.where(pick, choice, ids)


def insert_synonyms(ids: torch.Tensor, lengths: torch.Tensor, p: float, table: torch.Tensor,
                    max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """After each inner word that has neighbours, with probability p, insert one of its neighbours. A text never
    grows past `max_len` tokens (the tokenizer's limit); the batch widens as needed."""
    cand = table[ids.clamp(0, table.shape[0] - 1)]
    ins = (torch.rand(ids.shape) < p) & (cand[..., 0] >= 0) & _inner(ids, lengths)
    room = (max_len - lengths).clamp_min(0)
    ins &= torch.cumsum(ins.int(), 1) <= room[:, None]
    if not ins.any():
        return ids, lengths
    added = ins.sum(1)
    before = torch.cumsum(ins.int(), 1) - ins.int()  # insertions strictly before each position
    pos = torch.arange(ids.shape[1])[None, :] + before
    width = max(ids.shape[1], int((lengths + added).max()))  # never past max_len, nor past the batch's width
    out = torch.zeros(ids.shape[0], width, dtype=ids.dtype)
    real = torch.arange(ids.shape[1])[None, :] < lengths[:, None]  # padding is not moved, it is re-made
    r, c = real.nonzero(as_tuple=True)
    out[r, pos[r, c]] = ids[r, c]
    choice = cand.gather(2, torch.randint(0, cand.shape[2], (*ids.shape, 1))).squeeze(2)
    rows, cols = ins.nonzero(as_tuple=True)
    out[rows, pos[rows, cols] + 1] = choice[rows, cols]
    return out, lengths + added


def rotate_images(img: torch.Tensor, degrees: float) -> torch.Tensor:
    """Rotate each image by an angle drawn from U(-degrees, degrees) about its centre; corners that come in are
    0 (the mean colour, since images are normalised)."""
    a = (torch.rand(img.shape[0]) * 2 - 1) * math.radians(degrees)
    cos, sin = torch.cos(a), torch.sin(a)
    theta = torch.stack([torch.stack([cos, -sin, torch.zeros_like(a)], 1),
                         torch.stack([sin, cos, torch.zeros_like(a)], 1)], 1).to(img.dtype)
    grid = F.affine_grid(theta, list(img.shape), align_corners=False)
    return F.grid_sample(img, grid, align_corners=False, padding_mode="zeros")


def color_jitter(img: torch.Tensor, strength: float) -> torch.Tensor:
    """Brightness, contrast and (colour images) saturation, each scaled by a factor from U(1-s, 1+s) per image,
    applied to the normalised image: brightness shifts it, contrast stretches it about its mean, saturation
    blends it with its grey version."""
    def factor():
        return (1 + (torch.rand(img.shape[0], 1, 1, 1) * 2 - 1) * strength).to(img.dtype)

    out = img + (factor() - 1)
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    out = (out - mean) * factor() + mean
    if img.shape[1] == 3:
        grey = out.mean(dim=1, keepdim=True)
        out = (out - grey) * factor() + grey
    return out


def _resample(seq: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
    """seq [B, T, F] read at fractional time positions where [B, T'] (linear interpolation)."""
    lo = where.floor().long().clamp(0, seq.shape[1] - 1)
    hi = (lo + 1).clamp(max=seq.shape[1] - 1)
    w = (where - lo).unsqueeze(-1).to(seq.dtype)
    idx = lambda t: t.unsqueeze(-1).expand(-1, -1, seq.shape[2])  # noqa: E731
    return seq.gather(1, idx(lo)) * (1 - w) + seq.gather(1, idx(hi)) * w


def slice_windows(seq: torch.Tensor, fraction: float) -> torch.Tensor:
    """Window slicing (Le Guennec et al. 2016): a random stretch of `fraction` of each window, stretched back
    to the window's length."""
    T = seq.shape[1]
    span = (T - 1) * fraction
    start = torch.rand(seq.shape[0], 1) * (T - 1 - span)
    return _resample(seq, start + torch.linspace(0, span, T)[None, :])


def warp_windows(seq: torch.Tensor, sigma: float, knots: int = 4) -> torch.Tensor:
    """Time warping: the local speed of time follows a smooth random curve (knots drawn from N(1, sigma));
    the warped window starts and ends where the original does."""
    B, T = seq.shape[:2]
    speed = (1 + sigma * torch.randn(B, 1, knots + 2)).clamp_min(0.1)
    speed = F.interpolate(speed, size=T, mode="linear", align_corners=True)[:, 0]
    t = torch.cumsum(speed, 1) - speed[:, :1]
    return _resample(seq, t / t[:, -1:].clamp_min(1e-6) * (T - 1))


MIXABLE = ("numeric", "image", "audio", "sequence")


def mixup(batch: dict[str, torch.Tensor], alpha: float) -> tuple[dict[str, torch.Tensor], torch.Tensor, float]:
    """mixup (Zhang et al. 2018): each example is blended with another of the batch, weight lam ~ Beta(alpha,
    alpha) for the first. Continuous inputs (numeric, image, sequence) are blended; discrete ones (categories,
    tokens) are the first example's. Returns the batch, the partner order and lam; the loss blends the same way."""
    n = next(iter(batch.values())).shape[0]
    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    perm = torch.randperm(n)
    out = dict(batch)
    for key in MIXABLE:
        if key in out:
            out[key] = lam * out[key] + (1 - lam) * out[key][perm]
    return out, perm, lam


def char_noise(text: str, p: float) -> str:
    """Typos: each non-space character is, with probability p, deleted, replaced by another character of the
    same text (so the script stays: Latin letters for English, Han characters for Chinese), doubled, or
    swapped with the next character (one of the four, equally likely)."""
    if not text or p <= 0:
        return text
    chars = list(text)
    hit = (torch.rand(len(chars)) < p).tolist()
    kinds = torch.randint(0, 4, (len(chars),)).tolist()
    picks = torch.randint(0, len(chars), (len(chars),)).tolist()
    out: list[str] = []
    i = 0
    while i < len(chars):
        c = chars[i]
        if not hit[i] or c.isspace():
            out.append(c)
        elif kinds[i] == 0:
            pass  # deleted
        elif kinds[i] == 1:
            other = chars[picks[i]]
            out.append(other if not other.isspace() else c)
        elif kinds[i] == 2:
            out += [c, c]
        elif i + 1 < len(chars) and not chars[i + 1].isspace():
            out += [chars[i + 1], c]
            i += 1
        else:
            out.append(c)
        i += 1
    return "".join(out)


class Augmenter:
    """The training loop's per-batch augmentation: the config, plus the neighbour tables synonym replacement
    and insertion need (one per text column, from `neighbour_table`), the texts' maximum length, and for
    character noise the raw training texts and their tokenizers (noised texts are tokenized again, so a typo
    splits into word pieces as it would at prediction time). Character noise needs the batch's `row` key
    (each example's position in `texts`), which train_model adds; it never reaches the model."""

    def __init__(self, cfg: AugmentConfig, synonyms: dict[str, torch.Tensor] | None = None, max_len: int = 512,
                 texts: dict[str, list[str]] | None = None, tokenizers: dict | None = None):
        self.cfg, self.synonyms, self.max_len = cfg, synonyms or {}, max_len
        self.texts, self.tokenizers = texts or {}, tokenizers or {}
        self.specials = {col: special_ids(tok) for col, tok in self.tokenizers.items()}
        if cfg.text_token_dropout:
            none = [c for c, (_, unk) in self.specials.items() if unk is None]
            if none:
                raise ValueError(f"data.augment.text_token_dropout: the tokenizer of text column(s) {none} has no "
                                 "unknown token to drop tokens to (byte-level BPE); use text_delete instead")

    @property
    def active(self) -> bool:
        return is_active(self.cfg)

    def __call__(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        rows = batch.pop("row", None)
        if self.cfg.text_char_noise and rows is not None:
            batch = dict(batch)
            for col, texts in self.texts.items():
                tok = self.tokenizers[col]
                tok.enable_truncation(self.max_len)
                noisy = [char_noise(texts[int(r)], self.cfg.text_char_noise) for r in rows.tolist()]
                device = batch[f"text:{col}"].device
                ids, lengths = pad_ids(tok.encode_batch(noisy))
                batch[f"text:{col}"], batch[f"len:{col}"] = ids.to(device), lengths.to(device)
        return augment_batch(batch, self.cfg, self.synonyms, self.max_len, self.specials)


def synonym_tables(cfg: AugmentConfig, tokenizers: dict) -> dict[str, torch.Tensor]:
    """Neighbour tables for every text column, when synonym replacement or insertion is on."""
    if not (cfg.text_synonym or cfg.text_insert):
        return {}
    return {col: neighbour_table(tok.get_vocab(), cfg.synonym_model, cfg.synonym_neighbours)
            for col, tok in tokenizers.items()}


def oversample(features: dict[str, torch.Tensor], y: torch.Tensor, cfg: AugmentConfig,
               seed: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """data.augment.oversample: SMOTE (SMOTE-NC when there are categorical columns), borderline SMOTE or ADASYN
    from imbalanced-learn on the encoded training split, up to data.augment.oversample_ratio of the majority
    class. Tables only: text, image and sequence inputs have no meaningful interpolation here."""
    from imblearn.over_sampling import ADASYN, SMOTE, SMOTENC, BorderlineSMOTE

    other = [k for k in features if k not in ("numeric", "categorical")]
    if other:
        raise ValueError(f"data.augment.oversample: works on tables (numeric and categorical columns); this data "
                         f"also has {other}")
    if "numeric" not in features:
        raise ValueError("data.augment.oversample: needs at least one numeric column (SMOTE interpolates numbers)")
    num = features["numeric"].numpy()
    cat = features["categorical"].numpy() if "categorical" in features else np.zeros((len(num), 0), np.int64)
    counts = np.bincount(y.numpy())
    k = cfg.oversample_neighbours
    if counts[counts > 0].min() <= k:
        raise ValueError(f"data.augment.oversample_neighbours: {k} neighbours need more than {k} training rows in "
                         f"every class; the smallest class has {int(counts[counts > 0].min())}")
    target = max(1, int(round(counts.max() * cfg.oversample_ratio)))
    strategy = {c: max(int(n), target) for c, n in enumerate(counts) if n > 0}
    x = np.concatenate([num, cat.astype(num.dtype)], axis=1)
    if cfg.oversample == "smote":
        sampler = (SMOTENC(categorical_features=list(range(num.shape[1], x.shape[1])), k_neighbors=k,
                           sampling_strategy=strategy, random_state=seed) if cat.shape[1]
                   else SMOTE(k_neighbors=k, sampling_strategy=strategy, random_state=seed))
    elif cat.shape[1]:
        raise ValueError(f"data.augment.oversample: {cfg.oversample} interpolates every column; this table has "
                         f"categorical columns: use 'smote' (SMOTE-NC)")
    elif cfg.oversample == "borderline":
        sampler = BorderlineSMOTE(k_neighbors=k, sampling_strategy=strategy, random_state=seed)
    else:
        sampler = ADASYN(n_neighbors=k, sampling_strategy=strategy, random_state=seed)
    xs, ys = sampler.fit_resample(x, y.numpy())
    out = {"numeric": torch.from_numpy(np.ascontiguousarray(xs[:, : num.shape[1]], dtype=np.float32))}
    if cat.shape[1]:
        out["categorical"] = torch.from_numpy(np.rint(xs[:, num.shape[1]:]).astype(np.int64))
    return out, torch.from_numpy(np.asarray(ys)).to(y.dtype)


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


def augment_batch(batch: dict[str, torch.Tensor], cfg: AugmentConfig, synonyms: dict[str, torch.Tensor] | None = None,
                  max_len: int = 512, specials: dict[str, tuple[torch.Tensor, int | None]] | None = None
                  ) -> dict[str, torch.Tensor]:
    """Everything but mixup (which changes the loss too: the loop calls `mixup` itself). specials: per text column,
    its tokenizer's special-token ids and unknown-token id (`special_ids`), which token dropout needs."""
    out = dict(batch)
    if "image" in out and (cfg.image_flip or cfg.image_crop_padding or cfg.image_rotation or cfg.image_color_jitter):
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
        if cfg.image_rotation:
            img = rotate_images(img, cfg.image_rotation)
        if cfg.image_color_jitter:
            img = color_jitter(img, cfg.image_color_jitter)
        out["image"] = img
    if cfg.text_token_dropout:
        for key in [k for k in out if k.startswith("text:")]:
            if specials is None or key[5:] not in specials:
                raise ValueError(f"text_token_dropout: no special-token ids for {key[5:]!r}; pass its tokenizer's")
            special, unk = specials[key[5:]]
            out[key] = token_dropout(out[key], cfg.text_token_dropout, special, unk)
    for key in [k for k in out if k.startswith("text:")]:
        lkey = f"len:{key[5:]}"
        if lkey not in out or f"segment:{key[5:]}" in out:  # sentence pairs keep their segment layout
            continue
        table = (synonyms or {}).get(key[5:])
        if cfg.text_synonym and table is not None:
            out[key] = replace_synonyms(out[key], out[lkey], cfg.text_synonym, table)
        if cfg.text_insert and table is not None:
            out[key], out[lkey] = insert_synonyms(out[key], out[lkey], cfg.text_insert, table, max_len)
        if cfg.text_swap:
            out[key] = swap_tokens(out[key], out[lkey], cfg.text_swap)
        if cfg.text_delete:
            out[key], out[lkey] = delete_tokens(out[key], out[lkey], cfg.text_delete)
    if "sequence" in out and (cfg.sequence_jitter or cfg.sequence_scaling or cfg.sequence_slice or cfg.sequence_warp):
        seq = out["sequence"]
        if cfg.sequence_slice:
            seq = slice_windows(seq, 1 - cfg.sequence_slice)
        if cfg.sequence_warp:
            seq = warp_windows(seq, cfg.sequence_warp)
        if cfg.sequence_scaling:
            seq = seq * (1 + cfg.sequence_scaling * torch.randn(seq.shape[0], 1, seq.shape[2]))
        if cfg.sequence_jitter:
            seq = seq + cfg.sequence_jitter * torch.randn_like(seq)
        out["sequence"] = seq
    if "audio" in out and (cfg.audio_time_mask or cfg.audio_freq_mask):
        out["audio"] = spec_augment(out["audio"], cfg.audio_time_mask, cfg.audio_freq_mask, cfg.audio_masks)
    if cfg.tabular_noise and "numeric" in out:
        out["numeric"] = out["numeric"] + cfg.tabular_noise * torch.randn_like(out["numeric"])
    return out
