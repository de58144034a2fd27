"""Causal-LM fine-tuning of a GPT-2-style decoder on instruction/response pairs (a tiny random GPT-2 written by
the test), `foundry generate`, adapters on decoders, and the bad inputs."""

import json

import pandas as pd
import pytest

from modelfoundry.cli import main
from modelfoundry.config import load_config
from modelfoundry.data import prepare
from modelfoundry.predictor import Predictor
from modelfoundry.train import train

from ..conftest import LM_PAIRS, tiny_config


def _frames(repeat: int = 16):
    pairs = pd.DataFrame(LM_PAIRS, columns=["instruction", "response"])
    return pd.concat([pairs] * repeat, ignore_index=True), pairs


def _cfg(tmp_path, gpt2, finetune="full", epochs=12, lr=1e-2, batch_size=16, **model):
    data = {"task": "causal_lm", "prompt": "instruction", "target": "response", "text": {"max_length": 32},
            "prompt_template": "Q: {prompt}\nA: ", "split": {"val": 0.0},
            "clean": {"duplicates": False}}  # the pairs repeat on purpose: memorising them is the test
    return load_config(tiny_config(tmp_path, data, model={"type": "pretrained", "path": str(gpt2), "finetune": finetune, **model},
                                   train={"epochs": epochs, "lr": lr, "batch_size": batch_size, "early_stopping": None},
                                   evaluate={"baselines": True, "report": True}))


def test_loss_is_on_the_response_tokens_only(tmp_path, tiny_gpt2):
    from tokenizers import Tokenizer

    frame, test = _frames(2)
    data = prepare(_cfg(tmp_path, tiny_gpt2), frame, test)
    feats = data.encoded["test"].features
    tok = Tokenizer.from_file(str(tiny_gpt2 / "tokenizer.json"))
    for i, (prompt, response) in enumerate(LM_PAIRS):
        n_prompt = len(tok.encode(f"Q: {prompt}\nA: ", add_special_tokens=False).ids)
        n_response = len(tok.encode(response, add_special_tokens=False).ids)
        seg, ids = feats["segment:lm"][i], feats["text:lm"][i]
        assert int(seg[:n_prompt].sum()) == 0 and int(seg.sum()) == n_response + 1  # the response and end-of-text
        assert int(ids[n_prompt + n_response]) == tok.token_to_id("<|endoftext|>")
    from modelfoundry.models import build_model

    model = build_model(_cfg(tmp_path, tiny_gpt2).model, data.preprocessor.spec())
    out = model({k: v[:3] for k, v in feats.items()})
    assert out[:, 1].tolist() == feats["segment:lm"][:3].sum(1).float().tolist()  # tokens counted = response tokens


@pytest.mark.slow  # whole training runs: the fast tier stays near 3 minutes; CI runs it
def test_full_fine_tune_learns_the_responses_and_generates_them(tmp_path, tiny_gpt2, capsys):
    frame, test = _frames()
    run = train(_cfg(tmp_path, tiny_gpt2, epochs=30, lr=5e-3, batch_size=8), frame=frame, test_frame=test)
    metrics = json.loads((run.path / "metrics.json").read_text())
    base = metrics["baselines"]["base model (not fine-tuned)"]
    assert metrics["test"]["perplexity"] < 0.2 * base["perplexity"]
    assert len(metrics["samples"]) == len(LM_PAIRS) - 1 or len(metrics["samples"]) == 5
    assert "Samples" in (run.path / "report.html").read_text()
    pred = Predictor.load(run.path)
    assert pred.generate(["capital of japan", "opposite of hot"]) == ["tokyo", "cold"]
    assert main(["generate", str(run.path), "--prompt", "color of grass"]) == 0
    assert capsys.readouterr().out.strip() == "green"
    with pytest.raises(ValueError, match="generates text; use generate"):
        pred.predict(["capital of japan"])


@pytest.mark.parametrize("finetune,options,lr", [("lora", {"target_modules": ["c_attn"]}, 2e-2),
                                                 ("prefix", {"num_virtual_tokens": 4}, 2e-2),
                                                 ("prompt", {"num_virtual_tokens": 4}, 0.3), ("ia3", {}, 2e-2)])
def test_peft_methods_on_a_decoder(tmp_path, tiny_gpt2, finetune, options, lr):
    frame, test = _frames(4)
    epochs = 6 if finetune == "prompt" else 3  # virtual input tokens move a random tiny model slowly
    run = train(_cfg(tmp_path, tiny_gpt2, finetune, epochs=epochs, lr=lr, batch_size=4, adapter=options),
                frame=frame, test_frame=test)
    manifest = json.loads((run.path / "manifest.json").read_text())
    assert 0 < manifest["trainable_parameters"] < manifest["parameters"] / 2
    assert manifest["saved_model"]["tensors_from_base"] > 0  # the adapter is stored, not the base
    history = [json.loads(x) for x in (run.path / "history.jsonl").read_text().splitlines()]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    pred = Predictor.load(run.path)
    assert isinstance(pred.generate("capital of france", max_new_tokens=5)[0], str)
    sampled = [pred.generate("capital of france", max_new_tokens=5, temperature=1.5, top_p=0.9, seed=s)[0] for s in (1, 1, 2)]
    assert sampled[0] == sampled[1]  # seeded


def test_export_merged_decoder_matches_the_run(tmp_path, tiny_gpt2):
    import torch
    from transformers import AutoModelForCausalLM

    from modelfoundry.adapters import export_merged

    frame, test = _frames(4)
    run = train(_cfg(tmp_path, tiny_gpt2, "lora", epochs=2, lr=2e-2, adapter={"target_modules": ["c_attn"]}),
                frame=frame, test_frame=test)
    out = export_merged(run.path, tmp_path / "merged")
    merged = AutoModelForCausalLM.from_pretrained(out).eval()
    pred = Predictor.load(run.path)
    ids = torch.tensor([pred.preprocessor.prompt_ids("capital of france")])
    with torch.no_grad():
        assert torch.allclose(merged(input_ids=ids).logits, pred.model.model(input_ids=ids).logits, atol=1e-4)


def test_bad_causal_lm_configs(tmp_path, tiny_gpt2):
    with pytest.raises(ValueError, match="needs data.prompt"):
        load_config(tiny_config(tmp_path, {"task": "causal_lm", "target": "response"},
                                model={"type": "pretrained", "path": str(tiny_gpt2)}))
    with pytest.raises(ValueError, match="data.prompt applies to data.task: causal_lm"):
        load_config(tiny_config(tmp_path, {"prompt": "instruction", "target": "response"}))
    frame, test = _frames(2)
    with pytest.raises(ValueError, match="linear_probe .* a causal LM has no such head"):
        train(_cfg(tmp_path, tiny_gpt2, "linear_probe", epochs=1), frame=frame, test_frame=test)
    with pytest.raises(ValueError, match=r"missing column\(s\) \['instruction'\]"):
        train(_cfg(tmp_path, tiny_gpt2, epochs=1), frame=frame.rename(columns={"instruction": "question"}))
    bad = tmp_path / "no-eos"
    bad.mkdir()
    for f in tiny_gpt2.iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    cfg = json.loads((bad / "config.json").read_text())
    cfg["eos_token_id"] = None
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="eos_token_id is None"):
        train(_cfg(tmp_path, bad, epochs=1), frame=frame)
