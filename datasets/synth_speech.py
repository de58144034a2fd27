"""Spoken words synthesised by espeak-ng in many voices: more training voices for a voice-command recipe.

A recipe trained on FSDD's five speakers meets a sixth voice whose formants none of the five share. espeak-ng
(GPL-3.0, run as a separate program; the audio it makes is not covered by its licence) says each word in one of its
English accents x voice variants, at a random pitch and speed: a few hundred cheap, clean, robotic but varied voices.
Added to the real recordings they widen what the model has heard (measured in docs/domains/smart-home.md).

    .venv/bin/python datasets/synth_speech.py                   # after fetch_fsdd.py: the digits, 300 takes each
    .venv/bin/python datasets/synth_speech.py --per-word 100 --seed 1

Writes datasets/fsdd/synthetic/{digit}_{take}.wav (22.05 kHz WAV; the audio stage resamples to the recipe's rate),
datasets/fsdd/synthetic.csv (audio, digit, speaker = the espeak-ng voice) and datasets/fsdd/train_synthetic.csv (the
training manifest's rows, then these: what recipes/smart_home/voice_commands_synthetic.yaml reads); the synthetic/
folder is made anew on each run, the manifests are replaced whole. The test manifest is not read or changed. The
same seed and espeak-ng version give the same files. Needs the `espeak-ng` program (Debian/Ubuntu: apt install
espeak-ng; macOS: brew install espeak-ng).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
from pathlib import Path

import pandas as pd

HERE = Path(__file__).parent
WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
ACCENTS = ["en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-us-nyc", "en-gb-x-gbclan", "en-gb-x-gbcwmd"]
PITCH = (10, 90)  # espeak-ng -p, 0-99 (50 is the voice's own)
SPEED = (110, 220)  # espeak-ng -s, words per minute (175 is its default)


def espeak() -> str:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise SystemExit("espeak-ng: not found on PATH; install it (apt install espeak-ng, brew install espeak-ng)")
    return exe


def variants(exe: str) -> list[str]:
    """The voice variants this espeak-ng knows (`--voices=variant`: the names after `!v/`)."""
    out = subprocess.run([exe, "--voices=variant"], capture_output=True, text=True, check=True).stdout
    names = sorted({line.split("!v/")[1].split()[0] for line in out.splitlines() if "!v/" in line})
    if not names:
        raise SystemExit(f"{exe} --voices=variant listed no variants:\n{out}")
    return names


def synthesize(out: Path, per_word: int, seed: int, words: list[str] = WORDS) -> pd.DataFrame:
    """per_word takes of each word, each by a voice (accent + variant), pitch and speed drawn with `seed`; rows
    audio (absolute path), digit (the word's position in `words`), speaker ("espeak:<accent>+<variant>")."""
    exe = espeak()
    names, rng, rows = variants(exe), random.Random(seed), []
    if out.exists():  # a fresh set: takes left from a larger earlier run would not be in the manifest
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for label, word in enumerate(words):
        for take in range(per_word):
            voice = f"{rng.choice(ACCENTS)}+{rng.choice(names)}"
            pitch, speed = rng.randint(*PITCH), rng.randint(*SPEED)
            path = out / f"{label}_{take}.wav"
            subprocess.run([exe, "-v", voice, "-p", str(pitch), "-s", str(speed), "-w", str(path), word],
                           check=True, capture_output=True)
            rows.append({"audio": str(path.resolve()), "digit": label, "speaker": f"espeak:{voice}"})
    return pd.DataFrame(rows)


def write_manifests(data: Path, synthetic: pd.DataFrame) -> int:
    """data/synthetic.csv (the takes) and data/train_synthetic.csv (data/train.csv's rows, then the takes); returns
    how many real rows there were."""
    real = pd.read_csv(data / "train.csv")
    for name, frame in {"synthetic.csv": synthetic,
                        "train_synthetic.csv": pd.concat([real, synthetic], ignore_index=True)}.items():
        part = data / f".{name}.part"  # written whole, then renamed: an interrupted run leaves no half manifest
        frame.to_csv(part, index=False)
        os.replace(part, data / name)
    return len(real)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=HERE / "fsdd", help="the folder fetch_fsdd.py wrote")
    ap.add_argument("--per-word", type=int, default=300, help="takes of each word (default 300)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    train = args.data / "train.csv"
    if not train.exists():
        raise SystemExit(f"{train}: not found; run .venv/bin/python datasets/fetch_fsdd.py first")
    if args.per_word < 1:
        raise SystemExit(f"--per-word {args.per_word}: expected 1 or more")
    synthetic = synthesize(args.data / "synthetic", args.per_word, args.seed)
    real = write_manifests(args.data, synthetic)
    print(f"{args.data}/train_synthetic.csv: {real} recordings + {len(synthetic)} synthetic "
          f"({synthetic['speaker'].nunique()} espeak-ng voices)")


if __name__ == "__main__":
    main()
