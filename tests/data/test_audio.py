"""Audio inputs: decoding, resampling, log-mel spectrograms, SpecAugment, folders and tables of recordings."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from modelfoundry.api import train
from modelfoundry.config import Config
from modelfoundry.data.audio import fix_length, load_audio, log_mel, mel_filters, spec_augment
from modelfoundry.data.config import AudioConfig
from modelfoundry.data.sources import DataError, detect_format, read_source
from modelfoundry.predictor import Predictor

from ..conftest import tiny_config


def tone(freq: float, rate: int = 8000, seconds: float = 0.5, seed: int = 0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t) + 0.01 * np.random.default_rng(seed).normal(size=t.size)).astype(np.float32)


def test_mel_filters_peak_in_order_and_a_tone_lights_its_band():
    fb = mel_filters(8000, 256, 20, 20.0, 4000.0)
    assert fb.shape == (20, 129) and fb.max() <= 1.0 + 1e-6
    peaks = fb.argmax(1)
    assert torch.all(peaks[1:] >= peaks[:-1])
    low, high = log_mel(tone(300), 8000, 20, 25, 10, 20, None), log_mel(tone(2500), 8000, 20, 25, 10, 20, None)
    assert low.mean(1).argmax() < high.mean(1).argmax()


def test_other_rates_are_resampled_and_stereo_mixed_down(tmp_path):
    sf.write(tmp_path / "a.wav", np.stack([tone(440, 16000), tone(440, 16000)], 1), 16000)
    wave, rate = load_audio(str(tmp_path / "a.wav"), 8000)
    assert rate == 16000 and len(wave) == 4000
    wave2, _ = load_audio((tmp_path / "a.wav").read_bytes(), 8000)  # the bytes of a file, as serve receives them
    assert np.allclose(wave, wave2)


def test_fix_length_pads_short_and_cuts_long_around_the_loud_part():
    assert len(fix_length(np.ones(10, np.float32), 16)) == 16
    quiet_then_loud = np.r_[np.zeros(100), np.ones(20), np.zeros(100)].astype(np.float32)
    assert fix_length(quiet_then_loud, 30).sum() == 20


def test_spec_augment_masks_bands_and_frames_with_the_mean():
    torch.manual_seed(0)
    x = torch.arange(2 * 8 * 20, dtype=torch.float32).view(2, 1, 8, 20)
    y = spec_augment(x, time_width=5, freq_width=0, masks=1)
    changed = (y != x)[:, 0]
    assert changed.any() and not changed.all()  # whole frames change, not everything
    assert torch.equal(changed[0].any(0), changed[0].all(0))  # a masked frame is masked in every band
    assert torch.equal(spec_augment(x, 0, 0, 2), x)


def test_audio_config_refuses_impossible_bands():
    with pytest.raises(ValueError, match="above the Nyquist frequency"):
        AudioConfig(sample_rate=8000, fmax=6000)
    with pytest.raises(ValueError, match="hop_ms 30.0 is longer than window_ms"):
        AudioConfig(hop_ms=30)


def write_recordings(root, n=24, bad=True):
    """Two spoken-command stand-ins: a low and a high tone; some at 16 kHz, one file that is not audio."""
    rows = []
    for i in range(n):
        label = "low" if i % 2 == 0 else "high"
        rate = 16000 if i % 5 == 0 else 8000
        path = root / label / f"{i}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, tone((300 if label == "low" else 2000) * (1 + 0.05 * (i % 3)), rate, 0.3 + 0.02 * (i % 4), i), rate)
        rows.append({"audio": str(path), "label": label})
    if bad:
        (root / "low" / "broken.wav").write_bytes(b"RIFF not really")
        rows.append({"audio": str(root / "low" / "broken.wav"), "label": "low"})
    return rows


def test_a_folder_per_class_is_read_as_audio(tmp_path):
    write_recordings(tmp_path / "rec", n=4, bad=False)
    assert detect_format(tmp_path / "rec") == "audio_folder"
    df = read_source(tmp_path / "rec")
    assert sorted(df.columns) == ["audio", "label"] and len(df) == 4


def audio_config(tmp_path, path, report=False, epochs=6, lr=0.01, **data):
    return Config.model_validate(tiny_config(
        tmp_path, {"path": str(path), "target": "label", "audio": {"sample_rate": 8000, "duration": 0.4, "n_mels": 16},
                   "split": {"test": 0.25, "val": 0.15}, **data},
        model={"type": "cnn", "channels": [8], "hidden": [8]}, train={"epochs": epochs, "batch_size": 8, "lr": lr},
        evaluate={"report": report}))


def test_learns_from_recordings_counts_resampled_and_skips_unreadable(tmp_path):
    rows = write_recordings(tmp_path / "rec", n=40)
    pd.DataFrame(rows).to_csv(tmp_path / "rec.csv", index=False)
    run = train(audio_config(tmp_path, tmp_path / "rec.csv", augment={"audio_time_mask": 4, "audio_freq_mask": 2}))
    m = json.loads((run.path / "metrics.json").read_text())
    assert m["test"]["accuracy"] >= 0.9
    profile = json.loads((run.path / "data_profile.json").read_text())["audio"]
    counted = {s: p["sample_rates"] for s, p in profile.items()}
    assert sum(c.get("16000", 0) for c in counted.values()) == 8  # rows 0, 5, ..., 35
    assert sum(len(p["unreadable"]) for p in profile.values()) == 1
    assert "resampled to 8000 Hz (from 16000 Hz" in next(p["summary"] for p in profile.values() if "16000" in p["sample_rates"])
    pred = Predictor.load(run.path)
    out = pred.predict(pd.DataFrame({"audio": [rows[0]["audio"], (tmp_path / "rec" / "high" / "1.wav").read_bytes(),
                                               str(tmp_path / "rec" / "low" / "broken.wav")]}))
    assert out["prediction"].tolist()[:2] == ["low", "high"]
    assert pd.isna(out["prediction"][2]) and "unreadable audio" in out["error"][2]


def test_bad_audio_error_names_the_file(tmp_path):
    rows = write_recordings(tmp_path / "rec", n=12)
    pd.DataFrame(rows).to_csv(tmp_path / "rec.csv", index=False)
    with pytest.raises(DataError, match=r"unreadable audio at row \d+: .*broken.wav"):
        train(audio_config(tmp_path, tmp_path / "rec.csv", bad_audio="error", split={"test": 0.0, "val": 0.2}))


def test_the_report_shows_the_misheard_spectrograms(tmp_path):
    rows = write_recordings(tmp_path / "rec", n=24, bad=False)
    pd.DataFrame(rows).to_csv(tmp_path / "rec.csv", index=False)
    run = train(audio_config(tmp_path, tmp_path / "rec.csv", report=True, epochs=1, lr=1e-6))  # untrained: some wrong
    m = json.loads((run.path / "metrics.json").read_text())
    page = (run.path / "report.html").read_text()
    assert (m["test"]["accuracy"] < 1.0) == ("plots/audio_confusions.png" in page)
    assert m["test"]["accuracy"] < 1.0


def test_utterance_normalisation_centres_each_band_level_each_recording_and_fmin_moves_the_lowest_band(tmp_path):
    from modelfoundry.data.config import DataConfig
    from modelfoundry.data.features import Preprocessor

    rows = write_recordings(tmp_path / "rec", n=6, bad=False)
    df = pd.DataFrame(rows)
    specs = {}
    for norm in ("utterance", "level", "global"):
        data = DataConfig(target="label", audio={"sample_rate": 8000, "duration": 0.4, "n_mels": 16, "normalize": norm})
        pre = Preprocessor({"audio": "audio", "label": "categorical"}, "label", "classification", data).fit(df)
        specs[norm] = pre.transform(df).features["audio"]
    band_means = specs["utterance"].mean(dim=-1)  # per example and band, over time (then the global scaling)
    assert float((band_means - band_means.mean(dim=0)).abs().max()) < 1e-4  # every band's mean removed per utterance
    assert float((specs["global"].mean(dim=-1) - specs["global"].mean(dim=-1).mean(dim=0)).abs().max()) > 0.1
    levels = specs["level"].mean(dim=(1, 2, 3))  # level: each recording's one mean removed, its bands' shape kept
    assert float((levels - levels.mean()).abs().max()) < 1e-4
    assert float((specs["global"].mean(dim=(1, 2, 3)) - specs["global"].mean()).abs().max()) > 0.1
    level_bands = specs["level"].mean(dim=-1)
    assert float((level_bands - level_bands.mean(dim=0)).abs().max()) > 0.1
    low, high = mel_filters(8000, 256, 16, 20.0, 4000.0), mel_filters(8000, 256, 16, 1000.0, 4000.0)
    assert int(low[0].argmax()) < int(high[0].argmax())
