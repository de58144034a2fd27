"""The shipped decoder: it loads by name, writes English and Chinese, and instruction tuning starts from it."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from modelfoundry.config import load_config
from modelfoundry.predictor import Predictor
from modelfoundry.train import train

from ..conftest import tiny_config


def test_gpt_mini_loads_as_a_plain_hugging_face_decoder_and_knows_both_languages():
    from tokenizers import Tokenizer
    from transformers import AutoModelForCausalLM

    from modelfoundry.core.paths import resolve_model_path

    path = resolve_model_path("gpt-mini")
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    tok = Tokenizer.from_file(str(path / "tokenizer.json"))
    eos = model.config.eos_token_id
    for text in ("ROMEO:\nWhat say you, my lord?", "问：高血压患者能吃党参吗？\n答：可以。"):
        ids = torch.tensor([tok.encode(text).ids])
        with torch.no_grad():
            loss = float(model(input_ids=ids, labels=ids).loss)
        assert loss < 6.0, (text, loss)  # uniform over 8,192 tokens would be 9.0
    out = model.generate(torch.tensor([tok.encode("问：").ids]), max_new_tokens=12, do_sample=False,
                         pad_token_id=eos)
    assert any("\u4e00" <= ch <= "\u9fff" for ch in tok.decode(out[0].tolist()))  # it continues in Chinese


@pytest.mark.slow  # whole training runs: the fast tier stays near 3 minutes; CI runs it
def test_instruction_tuning_starts_from_gpt_mini(tmp_path):
    """Six pairs, learnt by heart (the test file is the training file: this checks that tuning from gpt-mini works,
    not that six examples generalise)."""
    pairs = [("capital of japan", "Tokyo."), ("opposite of hot", "Cold."), ("color of grass", "Green."),
             ("日本的首都", "东京。"), ("热的反义词", "冷。"), ("草的颜色", "绿色。")]
    pd.DataFrame(pairs, columns=["instruction", "response"]).to_csv(tmp_path / "sft.csv", index=False)
    cfg = load_config(tiny_config(
        tmp_path, {"path": str(tmp_path / "sft.csv"), "test_path": str(tmp_path / "sft.csv"), "task": "causal_lm",
                   "prompt": "instruction", "target": "response", "prompt_template": "Q: {prompt}\nA: ",
                   "split": {"val": 0.0}},
        model={"type": "pretrained", "path": "gpt-mini", "finetune": "lora",
               "adapter": {"r": 16, "lora_alpha": 32, "target_modules": ["c_attn", "c_proj", "c_fc"]}},
        train={"epochs": 30, "batch_size": 6, "lr": 3e-3, "early_stopping": None}, evaluate={"baselines": True}))
    run = train(cfg)
    m = json.loads((run.path / "metrics.json").read_text())
    assert m["test"]["loss"] < 0.5 * m["baselines"]["base model (not fine-tuned)"]["loss"]
    assert Predictor.load(run.path).generate("草的颜色")[0].startswith("绿")
