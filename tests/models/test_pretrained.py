"""Pretrained encoders from a local directory: a tiny random BERT written by the test (fast), and one
slow test on the embedded MiniLM."""

import json
import re

import pandas as pd
import pytest
import torch

from modelfoundry.config import load_config
from modelfoundry.predictor import Predictor
from modelfoundry.train import train

from ..conftest import SAMPLE, tiny_config


def _train(tmp_path, model: dict, epochs: int = 6, lr: float = 5e-3):
    data = {"path": str(SAMPLE), "target": "category"}
    return train(load_config(tiny_config(tmp_path, data, model=model, train={"epochs": epochs, "lr": lr, "early_stopping": None})))


def tiny_bert_vocab(path) -> int:
    return json.loads((path / "config.json").read_text())["vocab_size"]


def _trainable(run) -> int:
    return json.loads((run.path / "manifest.json").read_text())["trainable_parameters"]


@pytest.mark.slow
def test_full_linear_probe_and_lora_train_and_reload(tmp_path, tiny_bert):
    runs = {ft: _train(tmp_path, {"type": "pretrained", "path": str(tiny_bert), "finetune": ft}, epochs=10, lr=2e-2 if ft == "lora" else 5e-3)
            for ft in ("full", "linear_probe", "lora")}
    counts = {ft: _trainable(r) for ft, r in runs.items()}
    assert counts["linear_probe"] < counts["lora"] < counts["full"]
    for ft, run in runs.items():
        acc = json.loads((run.path / "metrics.json").read_text())["test"]["accuracy"]
        assert acc > 0.4, ft  # four intents: chance is 0.25
        pred = Predictor.load(run.path).predict(["where is my card?"])
        assert pred["prediction"][0] in set(pd.read_csv(SAMPLE)["category"])


def test_lora_options_pass_through_and_freeze_layers(tmp_path, tiny_bert):
    run = _train(tmp_path, {"type": "pretrained", "path": str(tiny_bert), "finetune": "lora",
                            "adapter": {"r": 2, "target_modules": ["query", "value"], "use_rslora": True}}, epochs=1)
    small = _trainable(run)
    run = _train(tmp_path, {"type": "pretrained", "path": str(tiny_bert), "finetune": "lora", "adapter": {"r": 8}}, epochs=1)
    assert small < _trainable(run)
    frozen = _train(tmp_path, {"type": "pretrained", "path": str(tiny_bert), "finetune": "full", "freeze_layers": 1}, epochs=1)
    full = _train(tmp_path, {"type": "pretrained", "path": str(tiny_bert), "finetune": "full"}, epochs=1)
    assert _trainable(frozen) < _trainable(full)


def test_bad_model_directory_and_bad_target_modules(tmp_path, tiny_bert):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="missing: config.json, model.safetensors .*tokenizer.json"):
        _train(tmp_path, {"type": "pretrained", "path": str(tmp_path / "empty")}, epochs=1)
    with pytest.raises(ValueError, match="Linear modules this model has: .*query.*value"):
        _train(tmp_path, {"type": "pretrained", "path": str(tiny_bert), "adapter": {"target_modules": ["q_proj"]}}, epochs=1)
    with pytest.raises(ValueError, match="adapter. options apply to the PEFT methods \\(lora"):
        load_config({"name": "x", "data": {}, "model": {"type": "pretrained", "finetune": "full", "adapter": {"r": 4}}})


@pytest.mark.slow
def test_embedded_minilm_with_lora(tmp_path):
    run = _train(tmp_path, {"type": "pretrained", "path": "minilm", "finetune": "lora"}, epochs=3)
    assert json.loads((run.path / "metrics.json").read_text())["test"]["accuracy"] > 0.8


@pytest.mark.slow
def test_prefix_tuning_on_the_embedded_minilm(tmp_path):
    """The case PEFT's own BERT sequence-classification path refuses under transformers 5."""
    run = _train(tmp_path, {"type": "pretrained", "path": "minilm", "finetune": "prefix"}, epochs=3, lr=2e-2)
    manifest = json.loads((run.path / "manifest.json").read_text())
    assert manifest["trainable_parameters"] < 0.2 * manifest["parameters"]
    assert json.loads((run.path / "metrics.json").read_text())["test"]["accuracy"] > 0.6  # four intents: chance 0.25


def test_adapter_runs_store_only_the_adapter_and_head_and_refuse_another_base(tmp_path, tiny_bert):
    lora = _train(tmp_path, {"type": "pretrained", "path": str(tiny_bert), "finetune": "lora"}, epochs=1)
    full = _train(tmp_path, {"type": "pretrained", "path": str(tiny_bert), "finetune": "full"}, epochs=1)
    lora_bytes, full_bytes = ((r.path / "model" / "weights.safetensors").stat().st_size for r in (lora, full))
    assert lora_bytes < 0.5 * full_bytes
    saved = json.loads((lora.path / "manifest.json").read_text())["saved_model"]
    assert saved["tensors_from_base"] > 0 and saved["weights_bytes"] == lora_bytes
    before = Predictor.load(lora.path).predict(["card not working"])
    arch_path = lora.path / "model" / "architecture.json"
    arch = json.loads(arch_path.read_text())
    arch["base"]["sha256"] = "0" * 64
    arch_path.write_text(json.dumps(arch))
    with pytest.raises(ValueError, match="architecture.json: sha256 .* differs"):  # the run's own file changed
        Predictor.load(lora.path)
    from modelfoundry.core.runs import Run

    Run.open(lora.path).record_files()  # as if the run had recorded another base: the base check answers
    with pytest.raises(ValueError, match="trained on the base model .* but the base found is"):
        Predictor.load(lora.path)
    assert len(before) == 1


@pytest.mark.slow
def test_ia3_and_adalora(tmp_path, tiny_bert):
    ia3 = _train(tmp_path, {"type": "pretrained", "path": str(tiny_bert), "finetune": "ia3",
                            "adapter": {"target_modules": ["key", "value", "dense"], "feedforward_modules": ["dense"]}}, epochs=1)
    lora = _train(tmp_path, {"type": "pretrained", "path": str(tiny_bert), "finetune": "lora"}, epochs=1)
    assert 0 < _trainable(ia3) < _trainable(lora)
    assert Predictor.load(ia3.path).predict(["card not working"])["prediction"][0]

    from modelfoundry.data import prepare
    from modelfoundry.train import make_accelerator, train_model

    cfg = load_config(tiny_config(tmp_path, {"path": str(SAMPLE), "target": "category"},
                                  model={"type": "pretrained", "path": str(tiny_bert), "finetune": "adalora",
                                         "adapter": {"init_r": 6, "target_r": 2, "tinit": 2, "tfinal": 2, "deltaT": 1,
                                                     "target_modules": ["query", "value", "dense"]}},
                                  train={"epochs": 2, "batch_size": 32, "early_stopping": None}))
    data = prepare(cfg)
    model, _ = train_model(cfg, data, None, make_accelerator("fp32"))
    encoder = next(iter(model.encoders.values()))
    pattern = encoder.model.peft_config["default"].rank_pattern
    assert pattern, "the budget update never ran"
    ranks = [int(sum(mask)) for mask in pattern.values()]
    assert sum(ranks) < 6 * len(ranks)  # the allocator pruned ranks towards target_r
    reg = model.regularization()
    assert reg is not None and reg.item() > 0
    run = train(cfg)  # and the whole stage saves and reloads it
    assert len(Predictor.load(run.path).predict(["where is my card"])) == 1


def test_export_merged_and_adapter_match_the_run(tmp_path, tiny_bert, capsys, monkeypatch):
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModel

    from modelfoundry.adapters import export_adapter, export_merged
    from modelfoundry.cli import main

    run = _train(tmp_path, {"type": "pretrained", "path": str(tiny_bert), "finetune": "lora"}, epochs=2)
    pred = Predictor.load(run.path)
    texts = ["my card has not arrived", "how do I link my card"]
    monkeypatch.setenv("FOUNDRY_PROGRESS", "1")
    expected = pred.predict_raw(texts)[1]
    out = export_merged(run.path, tmp_path / "merged")
    assert re.search(r"export: +\d+%\|", capsys.readouterr().err)  # progress, asked for
    assert (out / "config.json").exists() and (out / "model.safetensors").exists() and (out / "tokenizer.json").exists()
    merged = AutoModel.from_pretrained(out).eval()  # a plain HF model: no PEFT needed
    enc = pred.preprocessor.transform(pd.DataFrame({"text": texts})).features
    ids, lengths = enc["text:text"], enc["len:text"]
    mask = (torch.arange(ids.shape[1])[None] < lengths[:, None]).long()
    with torch.no_grad():
        h = merged(input_ids=ids, attention_mask=mask).last_hidden_state
        pooled = (h * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        head = load_file(out / "head.safetensors")
        logits = pooled @ head["out.weight"].T + head["out.bias"]
    assert torch.allclose(logits.softmax(-1), torch.tensor(expected, dtype=torch.float32), atol=1e-4)

    adapter = export_adapter(run.path, tmp_path / "adapter")
    assert (adapter / "adapter_config.json").exists() and (adapter / "adapter_model.safetensors").exists()
    assert PeftModel.from_pretrained(AutoModel.from_pretrained(tiny_bert), adapter)
    assert main(["export", str(run.path), "--merged", str(tmp_path / "m2")]) == 0
    assert main(["export", str(run.path)]) == 2
    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(ValueError, match="merged: already exists and is not an empty folder"):
        export_merged(run.path, out)  # never written over
    assert sorted(p.name for p in out.iterdir()) == before
    (tmp_path / "empty").mkdir()
    assert (export_adapter(run.path, tmp_path / "empty") / "adapter_config.json").exists()
    assert not list(tmp_path.glob(".*partial*"))


def test_an_interrupted_export_leaves_no_output_folder(tmp_path):
    from modelfoundry.adapters.export import _staged

    out = tmp_path / "merged"
    with pytest.raises(KeyboardInterrupt), _staged(out) as tmp:
        (tmp / "config.json").write_text("{}")
        raise KeyboardInterrupt
    assert not out.exists() and not list(tmp_path.iterdir())


@pytest.mark.slow
def test_predictor_merges_adapters_for_inference_and_predicts_the_same(tmp_path, tiny_bert):
    from modelfoundry.core.infer import predict_tensors
    from modelfoundry.models.pretrained import PretrainedEncoder
    from modelfoundry.predictor import merge_adapters

    texts = ["my card has not arrived", "how do I link my card", "top up failed", "exchange rate"]
    for finetune, adapter in (("lora", {}), ("ia3", {"target_modules": ["key", "value", "dense"],
                                                     "feedforward_modules": ["dense"]})):
        run = _train(tmp_path, {"type": "pretrained", "path": str(tiny_bert), "finetune": finetune, "adapter": adapter},
                     epochs=2, lr=2e-2)
        kept, merged = Predictor.load(run.path, merge=False), Predictor.load(run.path)
        enc_kept = next(iter(kept.model.encoders.values()))
        enc_merged = next(iter(merged.model.encoders.values()))
        assert hasattr(enc_kept.model, "peft_config") and not hasattr(enc_merged.model, "peft_config"), finetune
        assert not any("lora_" in n or "ia3_" in n for n, _ in enc_merged.model.named_parameters()), finetune
        a, b = kept.predict_raw(texts)[1], merged.predict_raw(texts)[1]
        assert abs(a - b).max() < 1e-5, finetune
        enc_kept.model.disable_adapter_layers()  # the adapter matters, so the comparison above means something
        assert abs(kept.predict_raw(texts)[1] - a).max() > 1e-4, finetune  # 10x the tolerance above
        # length-sorted, token-budgeted inference batches give the same outputs as one padded batch
        features = merged.preprocessor.transform(pd.DataFrame({"text": texts * 20})).features
        one = predict_tensors(merged.model, features, "classification", max_tokens=None)
        assert abs(predict_tensors(merged.model, features, "classification", max_tokens=64) - one).max() < 1e-5
    prefix = _train(tmp_path, {"type": "pretrained", "path": str(tiny_bert), "finetune": "prefix"}, epochs=1)
    pred = Predictor.load(prefix.path, merge=False)
    assert merge_adapters(pred.model) == 0  # virtual tokens are inputs: nothing to merge, left as trained
    assert isinstance(next(iter(pred.model.encoders.values())), PretrainedEncoder)
    assert len(Predictor.load(prefix.path).predict(texts)) == 4


def test_linear_probe_caches_exact_encodings_and_trains_the_head(tmp_path, tiny_bert):
    import torch

    from modelfoundry.data import prepare
    from modelfoundry.models import build_model
    from modelfoundry.models.pretrained import cache_frozen_encodings

    cfg = load_config(tiny_config(tmp_path, {"path": str(SAMPLE), "target": "category"},
                                  model={"type": "pretrained", "path": str(tiny_bert), "finetune": "linear_probe"}))
    data = prepare(cfg)
    model = build_model(cfg.model, data.preprocessor.spec()).eval()
    feats = data.encoded["val"].features
    cached = cache_frozen_encodings(model, feats)
    assert "len:text" not in cached and cached["text:text"].shape == (len(data.targets["val"]), 32)
    with torch.no_grad():
        direct = model.encoders["text__text"](feats["text:text"], feats["len:text"])
    assert torch.allclose(cached["text:text"], direct, atol=1e-5)  # per-length batches change nothing
    run = _train(tmp_path, {"type": "pretrained", "path": str(tiny_bert), "finetune": "linear_probe"}, epochs=8, lr=2e-2)
    assert json.loads((run.path / "metrics.json").read_text())["test"]["accuracy"] > 0.4


def test_layer_wise_learning_rate_decay(tmp_path, tiny_bert):
    from modelfoundry.core.spec import InputSpec
    from modelfoundry.models import build_model
    from modelfoundry.models.pretrained import PretrainedConfig
    from modelfoundry.train.config import TrainConfig
    from modelfoundry.train.optim import build_optimizer

    spec = InputSpec(task="classification", n_outputs=4, text={"text": 400}, max_length=66)
    model = build_model(PretrainedConfig(path=str(tiny_bert), finetune="full", layer_lr_decay=0.5), spec)
    opt = build_optimizer(model, TrainConfig(lr=1.0))
    lrs = {g["lr"] for g in opt.param_groups}
    assert lrs == {1.0, 0.5, 0.25, 0.125}  # head, layer 2, layer 1, embeddings (2 layers)
    emb = model.encoders["text__text"].model.embeddings.word_embeddings.weight
    assert next(g["lr"] for g in opt.param_groups if any(p is emb for p in g["params"])) == 0.125
    run = _train(tmp_path, {"type": "pretrained", "path": str(tiny_bert), "finetune": "full", "layer_lr_decay": 0.8}, epochs=1)
    assert run.status == "complete"


def test_regression_on_a_pretrained_encoder(tmp_path, tiny_bert):
    frame = pd.read_csv(SAMPLE)[["text"]]
    frame["words"] = frame["text"].str.split().str.len().astype(float)
    cfg = tiny_config(tmp_path, {"target": "words", "task": "regression"},
                      model={"type": "pretrained", "path": str(tiny_bert), "finetune": "full"},
                      train={"epochs": 8, "lr": 5e-3, "early_stopping": None})
    run = train(load_config(cfg), frame=frame)
    metrics = json.loads((run.path / "metrics.json").read_text())["test"]
    assert metrics["r2"] > 0.3  # the number of words is visible to the encoder through the mean pooling
    assert Predictor.load(run.path).predict(["one two three"])["prediction"].dtype.kind == "f"


@pytest.mark.slow
@pytest.mark.parametrize("method", ["prefix", "prompt"])
def test_prefix_and_prompt_tuning_work_on_an_encoder(tmp_path, tiny_bert, method):
    """PEFT's prefix tuning fails on BERT sequence classification under transformers 5; our encoder path works."""
    from modelfoundry.adapters import export_adapter, export_merged

    run = _train(tmp_path, {"type": "pretrained", "path": str(tiny_bert), "finetune": method,
                            "adapter": {"num_virtual_tokens": 4}}, epochs=8, lr=3e-2)
    lora = _train(tmp_path, {"type": "pretrained", "path": str(tiny_bert), "finetune": "lora"}, epochs=1)
    assert 0 < _trainable(run) < _trainable(lora) + 2000
    embeddings = tiny_bert_vocab(tiny_bert) * 32 * 4
    assert (run.path / "model" / "weights.safetensors").stat().st_size < embeddings  # no copy of the base's embeddings
    history = [json.loads(line) for line in (run.path / "history.jsonl").read_text().splitlines()]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    pred = Predictor.load(run.path)
    enc = next(iter(pred.model.encoders.values()))
    virtual = [n for n, p in enc.model.named_parameters() if p.requires_grad and "prompt_encoder" in n]
    assert virtual, "the learned virtual tokens are not in the model"
    batch = pred.predict(["where is my card?", "i want to cancel a transfer that has not arrived yet"])
    single = pred.predict(["where is my card?"])  # padding in a batch must not change a prediction
    assert batch["prediction"][0] == single["prediction"][0]
    out = export_adapter(run.path, tmp_path / f"{method}-adapter")
    assert (out / "adapter_config.json").exists()
    with pytest.raises(ValueError, match="nothing to merge"):
        export_merged(run.path, tmp_path / "merged")


def test_texts_longer_than_max_length_are_truncated_and_counted_in_the_report(tmp_path, tiny_bert):
    data = {"path": str(SAMPLE), "target": "category", "text": {"max_length": 6}}
    run = train(load_config(tiny_config(tmp_path, data, model={"type": "pretrained", "path": str(tiny_bert), "finetune": "lora"},
                                        train={"epochs": 1, "early_stopping": None}, evaluate={"report": True})))
    metrics = json.loads((run.path / "metrics.json").read_text())
    t = metrics["truncated_texts"]
    assert t["max_length"] == 6 and 0 < t["train"]["text"] <= t["rows"]["train"]
    assert "Truncated texts" in (run.path / "report.html").read_text()


def _pairs(n: int = 240, seed: int = 0) -> pd.DataFrame:
    """Pairs of BANKING77 queries, labelled by whether both ask for the same intent."""
    df = pd.read_csv(SAMPLE)
    a = df.sample(n=n, replace=True, random_state=seed).reset_index(drop=True)
    same = df.groupby("category").sample(n=n, replace=True, random_state=seed + 1)
    b = [same[same["category"] == c].iloc[i % 10]["text"] if i % 2 else df.iloc[(i * 7) % len(df)]["text"]
         for i, c in enumerate(a["category"])]
    cats_b = [c if i % 2 else df.iloc[(i * 7) % len(df)]["category"] for i, c in enumerate(a["category"])]
    return pd.DataFrame({"query": a["text"], "candidate": b, "label": ["same" if x == y else "different"
                                                                     for x, y in zip(a["category"], cats_b)]})


def test_sentence_pair_classification(tmp_path, tiny_bert):
    frame = _pairs()
    data = {"target": "label", "text": {"pair": ["query", "candidate"], "max_length": 48}}
    cfg = load_config(tiny_config(tmp_path, data, model={"type": "pretrained", "path": str(tiny_bert), "finetune": "full"},
                                  train={"epochs": 4, "lr": 5e-3, "early_stopping": None}))
    from modelfoundry.data import prepare

    prepared = prepare(cfg, frame)
    feats = prepared.encoded["train"].features
    assert set(feats) == {"text:query", "len:query", "segment:query"}  # one input; the candidate is its second half
    seg, ids = feats["segment:query"][0], feats["text:query"][0]
    from tokenizers import Tokenizer

    sep = Tokenizer.from_file(str(tiny_bert / "tokenizer.json")).token_to_id("[SEP]")
    assert 0 < int(seg.sum()) < int(feats["len:query"][0]) and int(ids[seg.argmax() - 1]) == sep  # a [SEP] b
    run = train(cfg, frame=frame)
    pred = Predictor.load(run.path)
    out = pred.predict(pd.DataFrame({"query": ["where is my card?"], "candidate": ["my card has not arrived"]}))
    assert out["prediction"][0] in {"same", "different"}
    with pytest.raises(ValueError, match="candidate"):
        pred.predict(pd.DataFrame({"query": ["where is my card?"]}))
    # the segment ids reach the encoder: zeroing them changes its output
    enc = next(iter(pred.model.encoders.values()))
    batch = {k: v[:4] for k, v in feats.items()}
    with_seg = enc(batch["text:query"], batch["len:query"], batch["segment:query"])
    without = enc(batch["text:query"], batch["len:query"])
    assert not torch.allclose(with_seg, without)


def test_sentence_pair_with_a_trained_tokenizer_and_bad_pair_column(tmp_path):
    frame = _pairs(120)
    data = {"target": "label", "text": {"pair": ["query", "candidate"], "vocab_size": 300, "min_frequency": 1}}
    run = train(load_config(tiny_config(tmp_path, data, model={"type": "mlp", "hidden": [16]}, train={"epochs": 1})), frame=frame)
    assert (run.path / "metrics.json").exists()
    bad = {"target": "label", "text": {"pair": ["query", "answer"]}}
    with pytest.raises(ValueError, match=r"data.text.pair: column\(s\) \['answer'\] are not in the data"):
        train(load_config(tiny_config(tmp_path, bad, train={"epochs": 1})), frame=frame)


def test_evaluating_on_labels_the_model_never_saw_is_refused(tmp_path, tiny_bert, capsys):
    from modelfoundry.cli import main

    run = _train(tmp_path, {"type": "pretrained", "path": str(tiny_bert), "finetune": "lora"}, epochs=1)
    df = pd.read_csv(SAMPLE).head(5)
    df.loc[3, "category"] = "crypto_refund"
    df.to_csv(tmp_path / "new.csv", index=False)
    assert main(["evaluate", str(run.path), str(tmp_path / "new.csv")]) == 2
    err = capsys.readouterr().err
    assert "label 'crypto_refund' (data row 4) was never seen in training" in err and "the model knows 4" in err


def test_last_pooling_reads_the_last_real_token_of_a_decoder(tiny_gpt2):
    from transformers import AutoModel

    from modelfoundry.models.pretrained import PretrainedConfig, PretrainedEncoder

    def encoder(pooling):
        enc = PretrainedEncoder(PretrainedConfig(type="pretrained", path=str(tiny_gpt2), finetune="full", pooling=pooling))
        return enc.eval()

    ids = torch.tensor([[5, 9, 14, 20, 7], [5, 9, 14, 0, 0]])  # the second text is 3 tokens, padded with id 0
    lengths = torch.tensor([5, 3])
    with torch.no_grad():
        last, mean = encoder("last")(ids, lengths), encoder("mean")(ids, lengths)
        hf = AutoModel.from_pretrained(tiny_gpt2).eval()
        want = [hf(input_ids=ids[i:i + 1, :n]).last_hidden_state[0, n - 1] for i, n in enumerate(lengths.tolist())]
        padded_otherwise = encoder("last")(torch.tensor([[5, 9, 14, 20, 7], [5, 9, 14, 33, 41]]), lengths)
    torch.testing.assert_close(last, torch.stack(want), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(padded_otherwise, last)  # what follows the last real token does not count
    assert not torch.allclose(last, mean, atol=1e-3)
