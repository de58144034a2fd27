"""datasets/synth_speech.py: espeak-ng says each word in drawn voices, the same seed gives the same files, and the
training manifest gains the takes after its own rows while the test manifest is left alone. Needs the espeak-ng
program (FOUNDRY_REQUIRE_ESPEAK=1, set by .ci/run, which installs it, turns a missing one into a failure)."""

import importlib.util
import os
import shutil

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from ..conftest import REPO

spec = importlib.util.spec_from_file_location("synth_speech", REPO / "datasets" / "synth_speech.py")
synth = importlib.util.module_from_spec(spec)
spec.loader.exec_module(synth)


@pytest.fixture(autouse=True)
def espeak():
    if shutil.which("espeak-ng") is None:
        if os.environ.get("FOUNDRY_REQUIRE_ESPEAK"):
            pytest.fail("espeak-ng is required here (FOUNDRY_REQUIRE_ESPEAK) but was not found")
        pytest.skip("espeak-ng not installed (Debian: apt-get install espeak-ng)")


def test_takes_are_speech_in_drawn_voices_and_reproducible(tmp_path):
    rows = synth.synthesize(tmp_path / "a", per_word=3, seed=0, words=["zero", "seven"])
    assert list(rows["digit"]) == [0, 0, 0, 1, 1, 1]
    assert rows["speaker"].str.startswith("espeak:").all() and rows["speaker"].nunique() > 1
    for path in rows["audio"]:
        wave, rate = sf.read(path)
        voiced = np.abs(wave) > 0.05
        assert rate == 22050 and 0.2 < len(wave) / rate < 2.0 and voiced.mean() > 0.1  # a spoken word, not silence
    again = synth.synthesize(tmp_path / "b", per_word=3, seed=0, words=["zero", "seven"])
    assert list(again["speaker"]) == list(rows["speaker"])
    assert all(open(a, "rb").read() == open(b, "rb").read() for a, b in zip(rows["audio"], again["audio"]))
    other = synth.synthesize(tmp_path / "c", per_word=3, seed=1, words=["zero", "seven"])
    assert list(other["speaker"]) != list(rows["speaker"])


def test_manifest_gains_the_takes_and_test_is_untouched(tmp_path):
    real = pd.DataFrame({"audio": ["/x/0_a_0.wav", "/x/1_a_0.wav"], "digit": [0, 1], "speaker": ["a", "a"]})
    real.to_csv(tmp_path / "train.csv", index=False)
    (tmp_path / "test.csv").write_text("audio,digit,speaker\n/x/0_b_0.wav,0,b\n")
    before = (tmp_path / "test.csv").read_bytes()
    synth.main(["--data", str(tmp_path), "--per-word", "1"])
    out = pd.read_csv(tmp_path / "train_synthetic.csv")
    assert len(out) == 12 and out.iloc[:2].equals(real)  # the real rows first, unchanged
    assert list(out["digit"].iloc[2:]) == list(range(10))
    assert (tmp_path / "test.csv").read_bytes() == before
    assert len(pd.read_csv(tmp_path / "synthetic.csv")) == 10


def test_missing_manifest_is_named(tmp_path):
    with pytest.raises(SystemExit, match="train.csv: not found; run .*fetch_fsdd.py"):
        synth.main(["--data", str(tmp_path)])
