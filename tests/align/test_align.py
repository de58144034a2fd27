"""The align stage on gpt-mini with tiny data: every method trains through TRL and reports held-out numbers; the run
generates and serves; bad input is refused with its name."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from modelfoundry import Predictor, load_config
from modelfoundry.align import distinct_n, repetition_rate
from modelfoundry.api import train
from modelfoundry.config import ConfigError
from modelfoundry.core.runs import Run
from modelfoundry.data.sources import DataError

pytest.importorskip("trl")

TOPICS = ["the weather", "my order", "a refund", "the opening hours", "a new card", "my password", "the delivery",
          "an invoice", "the app", "a booking", "the price", "my account", "a gift", "the warranty", "the menu",
          "a parcel", "the train", "my phone", "the bill", "a ticket"]


def pairs(n: int = 40) -> list[dict]:
    return [{"prompt": f"Question {i}: tell me about {TOPICS[i % len(TOPICS)]}.",
             "chosen": "Thank you for asking, I am glad to help you with that.",
             "rejected": "No. Go away."} for i in range(n)]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def config(tmp_path: Path, align: dict, data: dict | None = None, train: dict | None = None, name: str = "a",
           model: dict | None = None) -> dict:
    if data is None:
        data = {"path": str(write_jsonl(tmp_path / "pairs.jsonl", pairs())), "split": {"test": 0.25, "val": 0.0}}
    return {"name": name, "output_dir": str(tmp_path / "runs"), "data": data,
            "model": model or {"type": "pretrained", "path": "gpt-mini", "finetune": "full"},
            "train": {"lr": 2e-5, "epochs": 1, "max_steps": 4, "batch_size": 8, "precision": "fp32", **(train or {})},
            "align": {"eval_prompts": 4, "max_new_tokens": 8, **align}}


@pytest.mark.slow  # whole training runs: the fast tier stays near 3 minutes; CI runs it
def test_dpo_learns_the_preference_and_the_run_generates_and_serves(tmp_path):
    run = train(load_config(config(tmp_path, {"method": "dpo"}, train={"max_steps": 10, "lr": 1e-4})))
    m = json.loads((run.path / "metrics.json").read_text())
    assert Run.open(run.path).status == "complete"
    # untrained, the implicit reward is 0 for both replies (accuracy 0.5); DPO moves it toward the chosen reply
    assert m["test"]["reward_accuracy"] >= 0.9
    assert m["rows"] == 10 and m["template"] == repr("{prompt}\n")
    assert {"distinct_2", "repetition_rate"} <= set(m["generation"]["diversity"]["aligned"])
    assert m["cost"]["steps"] == 10 and m["cost"]["tokens_per_s"] > 0
    history = run.history()
    assert any("rewards/margins" in h for h in history) and (run.path / "report.html").is_file()
    card = (run.path / "MODEL_CARD.md").read_text(encoding="utf-8")  # an aligned run is a complete run: it has a card
    assert "library_name: modelfoundry" in card and "type: reward_accuracy" in card
    # the model directory is a plain Hugging Face decoder plus the template: Predictor, generate and serve take it
    pred = Predictor.load(run.path)
    out = pred.generate(["Question 99: tell me about the moon."], max_new_tokens=6)
    assert isinstance(out[0], str)
    from fastapi.testclient import TestClient

    from modelfoundry.serve import ServeSettings, create_app, load_models

    with TestClient(create_app(load_models([run.path]), ServeSettings())) as client:
        r = client.post("/v1/generate", json={"prompt": "Question 7: tell me about a refund.", "max_new_tokens": 4})
    assert r.status_code == 200, r.text
    assert r.json()["text"] == pred.generate(["Question 7: tell me about a refund."], max_new_tokens=4)[0]
    # the aligned run is a base for the next stage (model.path run:NAME)
    cfg = load_config(config(tmp_path, {"method": "dpo"}, model={"type": "pretrained", "path": "run:a",
                                                                 "finetune": "full"}))
    assert Path(cfg.model.path) == (run.path / "model").resolve()


@pytest.mark.slow  # whole training runs: the fast tier stays near 3 minutes; CI runs it
def test_reward_model_beats_chance_and_judges_a_dpo_run(tmp_path):
    reward = train(load_config(config(tmp_path, {"method": "reward"}, name="rm", train={"max_steps": 10, "lr": 1e-4})))
    m = json.loads((reward.path / "metrics.json").read_text())
    assert m["test"]["reward_accuracy"] >= 0.9
    assert "longer reply wins" in m["baselines"]
    with pytest.raises(ValueError, match="reward model"):
        Predictor.load(reward.path)
    dpo = train(load_config(config(tmp_path, {"method": "dpo", "judge": str(reward.path)}, name="d")))
    g = json.loads((dpo.path / "metrics.json").read_text())["generation"]
    assert 0 <= g["win_rate"] <= 1 and g["judge"] == str(reward.path)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["ipo", "orpo", "kto"])
def test_the_other_preference_methods_train_and_report(tmp_path, method):
    run = train(load_config(config(tmp_path, {"method": method, "eval_prompts": 0}, train={"max_steps": 2})))
    m = json.loads((run.path / "metrics.json").read_text())
    assert 0 <= m["test"]["reward_accuracy"] <= 1 and "generation" not in m


@pytest.mark.slow
def test_sft_lowers_held_out_loss_below_the_reference(tmp_path):
    rows = [{"prompt": p["prompt"], "completion": p["chosen"]} for p in pairs()]
    data = {"path": str(write_jsonl(tmp_path / "sft.jsonl", rows)), "split": {"test": 0.25, "val": 0.1}}
    run = train(load_config(config(tmp_path, {"method": "sft", "eval_prompts": 0}, data=data,
                                   train={"max_steps": 6, "lr": 1e-3})))
    m = json.loads((run.path / "metrics.json").read_text())
    assert m["test"]["loss"] < m["baselines"]["reference (before sft)"]["loss"] - 0.5
    assert any("eval_loss" in h for h in run.history())  # the val split is TRL's eval set


def prompts_file(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": p["prompt"], "topic": TOPICS[i % len(TOPICS)]}
                                                     for i, p in enumerate(pairs(24))])


@pytest.mark.slow
def test_grpo_composes_rule_rewards_and_reports_them_before_and_after(tmp_path):
    (tmp_path / "my_reward.py").write_text(
        "def mentions_topic(completions, topic=None, **_):\n"
        "    return [float(t in c) for c, t in zip(completions, topic)]\n", encoding="utf-8")
    rewards = [{"regex": r"[a-z]", "weight": 0.5}, {"length": [10, 40]}, {"contains": ["help", "glad"]},
               {"omits": ["Go away"]}, {"function": "my_reward.py:mentions_topic", "weight": 2.0}]
    data = {"path": str(prompts_file(tmp_path)), "split": {"test": 0.25, "val": 0.0}}
    cfg = config(tmp_path, {"method": "grpo", "rewards": rewards, "options": {"num_generations": 4, "beta": 0.04},
                            "samples": ["Question 1: tell me about my order."], "eval_temperature": 1.0},
                 data=data, train={"max_steps": 2})
    path = tmp_path / "grpo.yaml"
    import yaml

    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    run = train(load_config(path))
    m = json.loads((run.path / "metrics.json").read_text())
    g = m["generation"]
    assert list(g["rewards"]) == ["0_regex", "1_length", "2_contains", "3_omits", "4_function"]
    assert g["rewards"]["4_function"]["weight"] == 2.0
    assert {"reference", "aligned"} == set(g["reward"]) and 0 <= m["test"]["rule_win_rate"] <= 1
    assert g["samples"][0]["prompt"] == "Question 1: tell me about my order."
    # held-out replies sampled (eval_temperature), the greedy ones' diversity and full marks beside
    assert g["decoding"] == "sampled, temperature 1.0, seed 42"  # train.seed
    assert g["diversity"]["reference"] != g["greedy"]["diversity"]["reference"]
    assert list(g["greedy"]["full_marks"]) == list(g["rewards"])
    assert "Greedy replies beside" in (run.path / "report.html").read_text(encoding="utf-8")
    assert any("rewards/4_function/mean" in h for h in run.history())  # TRL logged each reward
    # rule rewards: each one's arithmetic
    from modelfoundry.align.config import RewardSpec
    from modelfoundry.align.rewards import Rule

    def rule(**spec):
        return Rule(RewardSpec(**spec), 0, str(tmp_path), str(tmp_path))
    assert rule(regex=r"\d+", match="full")(["123", " 12 ", "1a"]) == [1.0, 1.0, 0.0]
    assert rule(length=[4, 8])(["abcd", "abcdefgh", "ab", "a" * 12, ""]) == [1.0, 1.0, 0.0, 0.0, 0.0]
    assert rule(contains=["a", "b"])(["ab", "a", "c"]) == [1.0, 0.5, 0.0]
    assert rule(omits=["bad"])(["good", "bad"]) == [1.0, 0.0]


@pytest.mark.slow
def test_grpo_guard_watches_the_replies_and_stops_when_they_collapse(tmp_path):
    from transformers import TrainerControl, TrainerState

    from modelfoundry.align import GuardConfig
    from modelfoundry.align.rewards import Watch
    from modelfoundry.align.run import collapse, guard_callback

    data = {"path": str(prompts_file(tmp_path)), "split": {"test": 0.25, "val": 0.0}}
    cfg = config(tmp_path, {"method": "grpo", "rewards": [{"length": [5, 30]}], "eval_prompts": 0,
                            "options": {"num_generations": 4},
                            "guard": {"greedy_prompts": 2, "window": 2, "action": "warn"}},
                 data=data, train={"max_steps": 3})
    run = train(load_config(cfg))
    trace = {h["step"]: h["train_distinct_2"] for h in run.history() if "train_distinct_2" in h}
    assert set(trace) == {1, 2, 3} and all(0 < d <= 1 for d in trace.values())  # every step's training replies, watched
    greedy = {h["step"]: h["greedy_distinct_2"] for h in run.history() if "greedy_distinct_2" in h}
    assert set(greedy) == {0, 2} and 0 < greedy[2] <= 1  # the policy's greedy replies: before, then every window (2)
    # the check and the callback, on replies that collapse into "eeee" after two varied windows
    varied = [["the cat sat on the mat", "a dog ran in the park"]] * 2
    collapsed = [["e e e e e e", "e e e e"]] * 2
    g = GuardConfig(min_distinct_2=0.5, window=2, action="stop")
    assert collapse(varied + varied, g)[2] is False and collapse(varied + collapsed, g)[2] is True
    watch = Watch()
    cb = guard_callback(g, watch)
    state, control = TrainerState(), TrainerControl()
    for step, batch in enumerate(varied + collapsed, start=1):
        watch.batches.append(batch)
        state.global_step = step
        control = cb.on_step_end(None, state, control)
    assert control.should_training_stop and cb.fired["step"] == 4 and cb.fired["distinct_2_now"] < 0.5
    cb = guard_callback(g.model_copy(update={"action": "warn"}), watch)
    control = cb.on_step_end(None, state, TrainerControl())
    assert cb.fired is not None and not control.should_training_stop


def test_grpo_guard_decodes_prompts_greedily_and_fires_when_they_collapse():
    """The sampled replies can stay varied while the greedy ones collapse: guard.greedy_prompts watches those."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerControl, TrainerState

    from modelfoundry.align import GuardConfig
    from modelfoundry.align.rewards import Watch
    from modelfoundry.align.run import guard_callback
    from modelfoundry.core.paths import resolve_model_path

    path = resolve_model_path("gpt-mini")
    tok, model = AutoTokenizer.from_pretrained(path), AutoModelForCausalLM.from_pretrained(path)
    model.train()
    prompts = [f"{p['prompt']}\n" for p in pairs(3)]
    g = GuardConfig(min_distinct_2=0.5, window=2, action="stop")
    cb = guard_callback(g, Watch(), prompts, tok.eos_token_id or 0, 12)
    state, control = TrainerState(), TrainerControl()
    torch.manual_seed(7)
    rng = torch.get_rng_state()
    cb.on_train_begin(None, state, control, model=model, processing_class=tok)
    assert cb.greedy_first > 0.5 and model.training  # varied before training; the model is put back in training mode
    assert torch.equal(torch.get_rng_state(), rng)  # and the rollouts' random stream is left where it was
    state.global_step = 1
    control = cb.on_step_end(None, state, control, model=model, processing_class=tok)
    assert set(cb.greedy_trace) == {0} and cb.fired is None  # decoded every window steps only
    with torch.no_grad():  # the policy collapses: the same logits at every position -> one token repeated
        model.transformer.ln_f.weight.zero_()
        model.transformer.ln_f.bias.copy_(model.lm_head.weight[tok.convert_tokens_to_ids("e")])
    state.global_step = 2
    control = cb.on_step_end(None, state, control, model=model, processing_class=tok)
    assert cb.greedy_trace[2] < 0.2 and cb.fired["replies"] == "greedy" and control.should_training_stop


@pytest.mark.slow
def test_a_classifier_run_of_ours_is_a_grpo_reward(tmp_path):
    rows = [{"text": t, "label": lab} for t, lab in
            [("thank you, glad to help", "positive"), ("go away", "negative"), ("happy to help you", "positive"),
             ("no, leave me alone", "negative")] * 10]
    pd.DataFrame(rows).to_csv(tmp_path / "sent.csv", index=False)
    clf = train(load_config({"name": "sent", "output_dir": str(tmp_path / "runs"),
                             "data": {"path": str(tmp_path / "sent.csv"), "target": "label", "types": {"text": "text"}},
                             "model": {"type": "mlp", "hidden": [8]},
                             "train": {"epochs": 2, "precision": "fp32"},
                             "evaluate": {"baselines": False, "report": False}}))
    data = {"path": str(prompts_file(tmp_path)), "split": {"test": 0.25, "val": 0.0}}
    cfg = config(tmp_path, {"method": "grpo", "rewards": [{"run": "run:sent", "label": "positive"}],
                            "options": {"num_generations": 4}}, data=data, train={"max_steps": 1})
    run = train(load_config(cfg))
    assert "0_run" in json.loads((run.path / "metrics.json").read_text())["generation"]["rewards"]
    cfg["align"]["rewards"] = [{"run": str(clf.path), "label": "neutral"}]
    with pytest.raises(ValueError, match=r"give label, one of \['negative', 'positive'\]"):
        train(load_config(cfg))
    # a regressor's prediction is a reward as it is; a label does not fit it
    pd.DataFrame([{"text": r["text"], "score": float(r["label"] == "positive")} for r in rows]).to_csv(
        tmp_path / "score.csv", index=False)
    reg = train(load_config({"name": "score", "output_dir": str(tmp_path / "runs"),
                             "data": {"path": str(tmp_path / "score.csv"), "target": "score", "task": "regression",
                                      "types": {"text": "text"}},
                             "model": {"type": "mlp", "hidden": [8]},
                             "train": {"epochs": 1, "precision": "fp32", "early_stopping": None},
                             "evaluate": {"baselines": False, "report": False}}))
    cfg["align"]["rewards"] = [{"run": str(reg.path), "label": "positive"}]
    with pytest.raises(ValueError, match="a regressor predicts one value; label applies to classifiers"):
        train(load_config(cfg))


def test_diversity_numbers():
    assert distinct_n(["a b c d"], 2) == 1.0 and distinct_n(["a a a a"], 2) == pytest.approx(1 / 3)
    assert distinct_n(["春眠不覺曉"], 1) == 1.0  # each Chinese character is a unit
    assert repetition_rate(["e e e e e"]) == pytest.approx(0.75) and repetition_rate(["a b c"]) == 0.0


# -- bad input

def test_config_refusals():
    base = {"name": "x", "data": {"path": "p.jsonl"}, "model": {"type": "pretrained", "path": "gpt-mini"}}
    cases = [({"method": "grpo"}, "needs rewards"),
             ({"method": "dpo", "rewards": [{"regex": "a"}]}, "rewards apply to method grpo"),
             ({"method": "grpo", "rewards": [{"regex": "a", "length": [1, 2]}]}, "exactly one of"),
             ({"method": "dpo", "template": "no placeholder"}, "must contain"),
             ({"method": "reward", "judge": "runs/x"}, "judge applies")]
    for align, message in cases:
        with pytest.raises(ConfigError, match=message):
            load_config({**base, "align": align})
    with pytest.raises(ConfigError, match="model.type pretrained"):
        load_config({**base, "model": {"type": "mlp"}, "align": {"method": "dpo"}})
    with pytest.raises(ConfigError, match="data.task classification does not apply"):
        load_config({**base, "data": {"path": "p.jsonl", "task": "classification"}, "align": {"method": "dpo"}})


@pytest.mark.slow
def test_bad_data_is_named_and_counted(tmp_path):
    rows = pairs(40) + [{"prompt": "same", "chosen": "a reply", "rejected": "a reply "}] * 3
    rows.append({"prompt": "long " * 400, "chosen": "fine", "rejected": "not fine"})
    data = {"path": str(write_jsonl(tmp_path / "p.jsonl", rows)), "split": {"test": 0.25, "val": 0.0}}
    run = train(load_config(config(tmp_path, {"method": "dpo", "eval_prompts": 0}, data=data, train={"max_steps": 1})))
    dropped = json.loads((run.path / "data_profile.json").read_text())["dropped"]
    assert dropped["chosen_equals_rejected"] == 3 and dropped["truncated"] == 1 and dropped["rows"] == 44
    with pytest.raises(DataError, match=r"row 44: prompt and reply exceed"):
        train(load_config(config(tmp_path, {"method": "dpo", "too_long": "error"}, data=data)))
    with pytest.raises(DataError, match=r"missing column\(s\) \['chosen'\].*it has: prompt, good, rejected"):
        write_jsonl(tmp_path / "q.jsonl", [{"prompt": "p", "good": "a", "rejected": "b"}])
        train(load_config(config(tmp_path, {"method": "dpo"}, data={"path": str(tmp_path / "q.jsonl")})))
    with pytest.raises(ValueError, match="align.options.torch_compile: true"):
        train(load_config(config(tmp_path, {"method": "dpo"}, train={"compile": True})))
    with pytest.raises(ValueError, match="train.schedule plateau needs a validation metric"):
        train(load_config(config(tmp_path, {"method": "dpo"}, train={"schedule": "plateau"})))
    with pytest.raises(ValueError, match="an encoder cannot generate"):
        train(load_config(config(tmp_path, {"method": "dpo"}, model={"type": "pretrained", "path": "minilm",
                                                                     "finetune": "full"})))
    data = {"path": str(prompts_file(tmp_path)), "split": {"test": 0.25, "val": 0.0}}
    with pytest.raises(ValueError, match=r"'nowhere.py:f' does not import: FileNotFoundError"):
        train(load_config(config(tmp_path, {"method": "grpo", "rewards": [{"function": "nowhere.py:f"}]}, data=data)))
    with pytest.raises(ValueError, match=r"'no_such_module:f' does not import: ModuleNotFoundError"):
        train(load_config(config(tmp_path, {"method": "grpo", "rewards": [{"function": "no_such_module:f"}]}, data=data)))


@pytest.mark.slow
def test_chat_messages_and_json_arrays_are_read(tmp_path):
    rows = [{"conversations": [{"from": "human", "value": f"Hi {i}"}, {"from": "gpt", "value": "Hello"},
                               {"from": "human", "value": f"Tell me about {TOPICS[i % 20]}"}],
             "chosen": {"from": "gpt", "value": "Gladly, here it is."}, "rejected": {"from": "gpt", "value": "No."}}
            for i in range(16)]
    (tmp_path / "sharegpt.json").write_text(json.dumps(rows), encoding="utf-8")
    data = {"path": str(tmp_path / "sharegpt.json"), "split": {"test": 0.25, "val": 0.0}}
    run = train(load_config(config(tmp_path, {"method": "dpo", "prompt": "conversations", "eval_prompts": 2},
                                   data=data, train={"max_steps": 1})))
    sample = json.loads((run.path / "metrics.json").read_text())["generation"]["samples"][0]["prompt"]
    assert sample.startswith("user: Hi ") and "assistant: Hello\nTell me about" in sample


@pytest.mark.slow
def test_alignment_continues_our_causal_lm_fine_tune_with_its_template_and_keeps_a_lora_adapter(tmp_path):
    rows = [{"instruction": p["prompt"], "response": p["chosen"]} for p in pairs(12)]
    pd.DataFrame(rows).to_csv(tmp_path / "sft.csv", index=False)
    train(load_config({
        "name": "sft", "output_dir": str(tmp_path / "runs"),
        "data": {"path": str(tmp_path / "sft.csv"), "task": "causal_lm", "prompt": "instruction", "target": "response",
                 "prompt_template": "Q: {prompt}\nA: ", "split": {"test": 0.25, "val": 0.0}},
        "model": {"type": "pretrained", "path": "gpt-mini", "finetune": "lora"},
        "train": {"epochs": 1, "batch_size": 4, "lr": 1e-3, "precision": "fp32", "early_stopping": None},
        "evaluate": {"baselines": False, "report": False}}))
    cfg = config(tmp_path, {"method": "dpo", "eval_prompts": 2},
                 model={"type": "pretrained", "path": "run:sft", "finetune": "lora", "adapter": {"r": 4}},
                 train={"max_steps": 2, "lr": 1e-3})
    run = train(load_config(cfg))
    m = json.loads((run.path / "metrics.json").read_text())
    assert m["template"] == repr("Q: {prompt}\nA: ")  # the template the base was tuned with, carried on
    assert m["generation"]["samples"][0]["prompt"].startswith("Q: Question")
    assert (run.path / "cache" / "base-model" / "config.json").is_file()  # our run, exported once as HF
    assert (run.path / "model" / "adapter" / "adapter_config.json").is_file()
    assert run.manifest()["trainable_parameters"] < run.manifest()["parameters"] / 10
    assert isinstance(Predictor.load(run.path).generate(["Question 3: tell me about a refund."], max_new_tokens=3)[0], str)


def test_a_json_array_file_reads_as_a_table(tmp_path):
    from modelfoundry.data.sources import read_source

    (tmp_path / "a.json").write_text(json.dumps([{"x": 1, "y": "a"}, {"x": 2, "y": "b"}]), encoding="utf-8")
    assert read_source(tmp_path / "a.json").to_dict("records") == [{"x": 1, "y": "a"}, {"x": 2, "y": "b"}]
    (tmp_path / "b.json").write_text(json.dumps([{"x": 1}, 3]), encoding="utf-8")
    with pytest.raises(DataError, match="item 1 of the array is a int"):
        read_source(tmp_path / "b.json")
    (tmp_path / "c.json").write_text('{"x": 1}\n{"x": 2}\n', encoding="utf-8")
    with pytest.raises(DataError, match="JSON lines go in a .jsonl file"):
        read_source(tmp_path / "c.json")


def test_reply_log_probabilities_are_the_same_batched_and_one_by_one():
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    from modelfoundry.align.evaluate import reply_logps
    from modelfoundry.core.paths import resolve_model_path

    path = resolve_model_path("gpt-mini")
    model, tok = AutoModelForCausalLM.from_pretrained(path), PreTrainedTokenizerFast.from_pretrained(path)
    prompts = ["Question 1: hi\n", "床前明月光，", "A much longer question about the weather today\n", "x"]
    replies = ["Hello there.", "疑是地上霜。", "Sunny.", "a b c d e f g"]
    one = reply_logps(model, tok, prompts, replies, 3, 256, batch_size=1)
    many = reply_logps(model, tok, prompts, replies, 3, 256, batch_size=4)
    assert [n for _, n in one] == [n for _, n in many] and all(n > 1 for _, n in one)
    assert [s for s, _ in many] == pytest.approx([s for s, _ in one], abs=1e-3)
    # the prompt is context, not scored: a reply's log-probability changes with the prompt before it
    other = reply_logps(model, tok, ["Question 2: hello\n"], ["Hello there."], 3, 256)
    assert other[0][1] == one[0][1] and other[0][0] != pytest.approx(one[0][0], abs=1e-4)


@pytest.mark.slow  # three whole training runs
def test_a_pretraining_run_is_a_base_to_align(tmp_path):
    """The chain the pretraining docs promise: a clm run (its directory or its model/, a plain Hugging Face decoder)
    is aligned from; an mlm run is an encoder and is refused for generating methods, naming why."""
    from ..train.test_pretrain import TINY_BERT, TINY_GPT, cfg_for, corpus

    clm = train(cfg_for(tmp_path, {"path": corpus(tmp_path)}, TINY_GPT, epochs=1))
    rows = [{"prompt": f"{n} has", "completion": f" {k} apples."} for n, k in zip(["anna", "bob", "chen", "dora"] * 5,
                                                                                   range(1, 21))]
    data = {"path": str(write_jsonl(tmp_path / "sft.jsonl", rows)), "split": {"test": 0.25, "val": 0.0}}
    for path in (clm.path, clm.path / "model"):
        run = train(load_config(config(tmp_path, {"method": "sft", "eval_prompts": 2}, data=data,
                                       train={"max_steps": 1},
                                       model={"type": "pretrained", "path": str(path), "finetune": "full"})))
        m = json.loads((run.path / "metrics.json").read_text())
        assert m["base_model"] == str(clm.path / "model") and m["template"] == "'{prompt}\\n'"
        assert m["generation"]["samples"][0]["aligned"]  # it generates
    mlm = train(cfg_for(tmp_path, {"path": corpus(tmp_path), "task": "mlm"}, TINY_BERT, epochs=1, out="mlm"))
    with pytest.raises(ValueError, match="an encoder cannot generate"):
        train(load_config(config(tmp_path, {"method": "sft", "eval_prompts": 0}, data=data, train={"max_steps": 1},
                                 model={"type": "pretrained", "path": str(mlm.path), "finetune": "full"})))
