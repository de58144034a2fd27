"""Audio: decode one value (a path or a file's bytes) with soundfile, mix down to mono, resample to the configured rate,
pad or cut to a fixed duration, and compute a log-mel spectrogram in plain torch; SpecAugment's time and frequency
masks for training batches.

torchaudio is not used: the package index's build lags our torch. The mel filter bank is the HTK formula (as
librosa's `htk=True`), fifteen lines here instead of librosa's dependency tree (numba, llvmlite). Resampling is
scipy's polyphase filter."""

from __future__ import annotations

import io
from fractions import Fraction
from functools import lru_cache
from typing import Any

import numpy as np
import torch

from .sources import DataError


def _soundfile():
    try:
        import soundfile
    except ImportError:
        raise DataError("audio inputs need soundfile: pip install 'modelfoundry[audio]'") from None
    return soundfile


def load_audio(value: Any, sample_rate: int) -> tuple[np.ndarray, int]:
    """A path or a file's bytes -> (mono float32 waveform at `sample_rate`, the file's own rate). An array is taken
    as a waveform already at `sample_rate`."""
    if isinstance(value, np.ndarray | list):
        return np.asarray(value, dtype=np.float32).reshape(-1), sample_rate
    sf = _soundfile()
    source = io.BytesIO(value) if isinstance(value, bytes) else str(value)
    wave, rate = sf.read(source, dtype="float32", always_2d=True)
    wave = wave.mean(axis=1)
    if wave.size == 0:
        raise ValueError("the file holds no samples")
    if rate != sample_rate:
        from scipy.signal import resample_poly

        ratio = Fraction(sample_rate, rate).limit_denominator(1000)
        wave = resample_poly(wave, ratio.numerator, ratio.denominator).astype(np.float32)
    return wave, int(rate)


def fix_length(wave: np.ndarray, samples: int) -> np.ndarray:
    """Cut a longer recording around its loudest stretch (speech rarely starts at sample 0 of a long file) or pad a
    shorter one with silence at the end."""
    if len(wave) >= samples:
        if len(wave) == samples:
            return wave
        energy = np.convolve(wave.astype(np.float64) ** 2, np.ones(samples), mode="valid")
        start = int(np.argmax(energy))
        return wave[start: start + samples]
    return np.pad(wave, (0, samples - len(wave)))


def _hz_to_mel(f: np.ndarray | float) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


@lru_cache(maxsize=8)
def mel_filters(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> torch.Tensor:
    """[n_mels, n_fft // 2 + 1] triangular filters, equally spaced on the HTK mel scale between fmin and fmax, each
    peaking at 1 at its centre frequency."""
    freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    lo, centre, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (freqs[None, :] - lo) / np.maximum(centre - lo, 1e-9)
    falling = (hi - freqs[None, :]) / np.maximum(hi - centre, 1e-9)
    return torch.from_numpy(np.clip(np.minimum(rising, falling), 0, None).astype(np.float32))


def log_mel(wave: np.ndarray, sample_rate: int, n_mels: int, window_ms: float, hop_ms: float, fmin: float,
            fmax: float | None) -> torch.Tensor:
    """A waveform -> log-mel spectrogram [n_mels, frames] (natural log of the power, floored at 1e-6)."""
    win = max(8, round(sample_rate * window_ms / 1000))
    hop = max(1, round(sample_rate * hop_ms / 1000))
    n_fft = 1 << (win - 1).bit_length()
    x = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))
    spec = torch.stft(x, n_fft, hop_length=hop, win_length=win, window=torch.hann_window(win), center=True,
                      return_complex=True).abs() ** 2
    fb = mel_filters(sample_rate, n_fft, n_mels, float(fmin), float(fmax or sample_rate / 2))
    return torch.log(fb @ spec + 1e-6)


def frames(samples: int, sample_rate: int, hop_ms: float) -> int:
    """Spectrogram frames of a `samples`-long recording (torch.stft, centred)."""
    return samples // max(1, round(sample_rate * hop_ms / 1000)) + 1


def spec_augment(x: torch.Tensor, time_width: int, freq_width: int, masks: int) -> torch.Tensor:
    """SpecAugment (Park et al. 2019) on a batch [N, 1, mels, frames]: `masks` time masks up to `time_width` frames
    and `masks` frequency masks up to `freq_width` bands per example, filled with the example's mean."""
    n, _, m, t = x.shape
    out = x.clone()
    fill = x.mean(dim=(1, 2, 3))
    for width, size, dim in ((time_width, t, 3), (freq_width, m, 2)):
        if not width:
            continue
        for _ in range(masks):
            w = torch.randint(0, min(width, size) + 1, (n,))
            start = (torch.rand(n) * (size - w + 1).float()).long()
            pos = torch.arange(size)
            mask = (pos[None, :] >= start[:, None]) & (pos[None, :] < (start + w)[:, None])  # [n, size]
            shape = (n, 1, 1, size) if dim == 3 else (n, 1, size, 1)
            out = torch.where(mask.view(shape), fill.view(n, 1, 1, 1), out)
    return out


def spectrograms(values: list, cfg) -> tuple[list[torch.Tensor], list[int], list[dict], dict[int, int]]:
    """Recordings (paths, bytes or waveforms) -> ([1, mels, frames] spectrograms, the positions read, the unreadable
    ones with their errors, how many came at each sample rate), by data.audio's settings."""
    samples = round(cfg.duration * cfg.sample_rate)
    out, keep, bad, rates = [], [], [], {}
    for i, v in enumerate(values):
        try:
            wave, rate = load_audio(v, cfg.sample_rate)
            rates[rate] = rates.get(rate, 0) + 1
            spec = log_mel(fix_length(wave, samples), cfg.sample_rate, cfg.n_mels, cfg.window_ms, cfg.hop_ms,
                           cfg.fmin, cfg.fmax)
            if cfg.normalize == "utterance":
                spec = (spec - spec.mean(dim=1, keepdim=True)) / spec.std().clamp_min(1e-3)
            elif cfg.normalize == "level":
                spec = (spec - spec.mean()) / spec.std().clamp_min(1e-3)
            out.append(spec.unsqueeze(0))
            keep.append(i)
        except DataError:  # soundfile is not installed: no file can be read
            raise
        except Exception as exc:  # soundfile raises several types for a corrupt or foreign file; each is reported
            shown = f"<{len(v)} bytes>" if isinstance(v, bytes) else str(v)
            bad.append({"row": i, "audio": shown, "error": f"{type(exc).__name__}: {exc}"})
    return out, keep, bad, rates


def describe_rates(rates: dict[int, int], sample_rate: int) -> str:
    """'312 of 3,000 resampled to 16000 Hz (from 8000 Hz: 312)': the count a profile shows."""
    moved = {r: n for r, n in rates.items() if r != sample_rate}
    total = sum(rates.values())
    if not moved:
        return f"all {total:,} at {sample_rate} Hz"
    parts = ", ".join(f"{r} Hz: {n:,}" for r, n in sorted(moved.items()))
    return f"{sum(moved.values()):,} of {total:,} resampled to {sample_rate} Hz (from {parts})"
