"""Shared fixtures: fixed seeds, offline hub, tiny data written into tmp_path, and a config builder."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("MPLBACKEND", "Agg")
REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "tests" / "fixtures" / "banking77_sample.csv"


@pytest.fixture(autouse=True)
def _seeds():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    torch.set_num_threads(1)


def tabular_frame(n: int = 240, seed: int = 0, text: bool = False) -> pd.DataFrame:
    """A learnable table: the label depends on x1, x2 and the colour."""
    rng = np.random.default_rng(seed)
    x1 = rng.normal(size=n)
    x2 = rng.normal(size=n)
    colour = rng.choice(["red", "green", "blue"], size=n)
    logit = 2 * x1 - x2 + (colour == "red") * 1.5
    df = pd.DataFrame({"x1": x1.round(4), "x2": x2.round(4), "colour": colour,
                       "label": np.where(logit > 0, "yes", "no")})
    if text:
        words = {"yes": ["great", "good", "fine"], "no": ["bad", "poor", "awful"]}
        df["note"] = [f"the service was {rng.choice(words[y])} and {rng.choice(words[y])} today" for y in df["label"]]
    return df


def regression_frame(n: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    return pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "y": 3 * x[:, 0] - 2 * x[:, 1] + 0.1 * rng.normal(size=n)})


def tiny_config(tmp_path: Path, data: dict, model: dict | None = None, train: dict | None = None,
                evaluate: dict | None = None, name: str = "t") -> dict:
    return {"name": name, "output_dir": str(tmp_path / "runs"), "data": data,
            "model": model or {"type": "mlp", "hidden": [16], "dropout": 0.0},
            "train": {"epochs": 3, "batch_size": 32, "lr": 0.01, "precision": "fp32", **(train or {})},
            "evaluate": {"baselines": False, "report": False, **(evaluate or {})}}


def write_yaml(path: Path, obj: dict) -> Path:
    path.write_text(yaml.safe_dump(obj, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


@pytest.fixture
def table_csv(tmp_path: Path) -> Path:
    path = tmp_path / "table.csv"
    tabular_frame().to_csv(path, index=False)
    return path


@pytest.fixture
def table_config(tmp_path: Path, table_csv: Path) -> Path:
    return write_yaml(tmp_path / "cfg.yaml", tiny_config(tmp_path, {"path": str(table_csv), "target": "label"}))


def cli_env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg"}


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    """A 2-layer, 32-wide random BERT with a WordPiece tokenizer, written as a local HF model directory."""
    from transformers import BertConfig, BertModel

    from modelfoundry.data.text import train_tokenizer

    d = tmp_path_factory.mktemp("tiny-bert")
    tok = train_tokenizer(pd.read_csv(SAMPLE)["text"].tolist(), "wordpiece", 400, 1, True)
    tok.save(str(d / "tokenizer.json"))
    cfg = BertConfig(vocab_size=tok.get_vocab_size(), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128)
    torch.manual_seed(0)
    BertModel(cfg).save_pretrained(d)
    return d


LM_PAIRS = [("color of the sky", "blue"), ("color of grass", "green"), ("opposite of hot", "cold"),
            ("opposite of up", "down"), ("capital of france", "paris"), ("capital of japan", "tokyo")]


@pytest.fixture(scope="session")
def tiny_gpt2(tmp_path_factory) -> Path:
    """A 2-layer, 32-wide random GPT-2 with a byte-level BPE tokenizer and an end-of-text token."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from modelfoundry.data.text import train_tokenizer

    d = tmp_path_factory.mktemp("tiny-gpt2")
    corpus = [f"{p}\n{r}" for p, r in LM_PAIRS] * 5 + pd.read_csv(SAMPLE)["text"].tolist()
    tok = train_tokenizer(corpus, "bpe", 300, 1, True)
    tok.add_special_tokens(["<|endoftext|>"])
    eos = tok.token_to_id("<|endoftext|>")
    tok.save(str(d / "tokenizer.json"))
    cfg = GPT2Config(vocab_size=tok.get_vocab_size(with_added_tokens=True), n_positions=128, n_embd=32, n_layer=2,
                     n_head=2, eos_token_id=eos, bos_token_id=eos)
    torch.manual_seed(0)  # the same tiny model whatever ran before
    GPT2LMHeadModel(cfg).save_pretrained(d)
    return d
