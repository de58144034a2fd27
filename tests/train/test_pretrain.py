"""Self-supervised pretraining end to end: clm / mlm from scratch and continued, the run's model directory as a plain
Hugging Face model and as the input of a fine-tune, exact resume, and bad input."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
import torch

from modelfoundry.api import resume
from modelfoundry.cli.main import main
from modelfoundry.config import ConfigError, load_config
from modelfoundry.core.runs import Run
from modelfoundry.data.sources import DataError
from modelfoundry.predictor import Predictor
from modelfoundry.train import train

from ..conftest import SAMPLE, tiny_config

TINY_GPT = {"type": "gpt", "preset": None, "layers": 2, "heads": 2, "width": 32}
TINY_BERT = {"type": "bert", "preset": None, "layers": 2, "heads": 2, "width": 32}


def corpus(tmp_path, n: int = 400, seed: int = 0) -> str:
    """Short documents with structure a small model learns in a few epochs: "<name> has <k> <things>."."""
    rng = np.random.default_rng(seed)
    names, things = ["anna", "bob", "chen", "dora"], ["apples", "books", "cats", "drums"]
    lines = [json.dumps({"url": f"u{i}", "text": f"{rng.choice(names)} has {rng.integers(1, 9)} {rng.choice(things)}."})
             for i in range(n)]
    path = tmp_path / "crawl.jsonl"
    path.write_text("\n".join(lines), encoding="utf-8")
    return str(path)


def cfg_for(tmp_path, data: dict, model: dict, epochs: int = 6, out: str = "runs", **train_opts):
    data = {"task": "clm", "text": {"tokenizer": "char", "lowercase": False},
            "corpus": {"block_size": 32, "val": 0.1, "test": 0.1}, **data}
    raw = tiny_config(tmp_path, data, model=model, train={"epochs": epochs, "batch_size": 16, "lr": 1e-2,
                                                          "early_stopping": None, **train_opts},
                      evaluate={"baselines": True, "report": True}, name="lm")
    return load_config({**raw, "output_dir": str(tmp_path / out)})


def test_clm_from_scratch_beats_unigram_and_saves_a_plain_hugging_face_model(tmp_path, capsys):
    from transformers import AutoModelForCausalLM

    run = train(cfg_for(tmp_path, {"path": corpus(tmp_path)}, TINY_GPT))
    m = json.loads((run.path / "metrics.json").read_text())
    test, unigram = m["test"], m["baselines"]["unigram (training token frequencies)"]
    assert test["perplexity"] < 0.6 * unigram["perplexity"]
    assert 0 < test["bits_per_byte"] < unigram["bits_per_byte"]
    assert len(m["samples"]) >= 1 and (run.path / "report.html").exists()
    profile = json.loads((run.path / "data_profile.json").read_text())
    assert profile["token_dtype"] == "uint16" and sum(s["documents"] for s in profile["streams"].values()) == 400

    pred = Predictor.load(run.path)
    hf = AutoModelForCausalLM.from_pretrained(run.path / "model").eval()
    ids = torch.tensor([pred.preprocessor.prompt_ids("anna has 3 ")])
    with torch.no_grad():
        assert torch.allclose(hf(input_ids=ids).logits, pred.model.model(input_ids=ids).logits, atol=1e-5)
    out = pred.generate(["anna has", "bob"], max_new_tokens=12, temperature=0.9, top_k=5, seed=3)
    assert out == pred.generate(["anna has", "bob"], max_new_tokens=12, temperature=0.9, top_k=5, seed=3)
    greedy = pred.generate("", max_new_tokens=24)[0]  # from end-of-text: a new document
    assert " has " in greedy and "." in greedy, greedy
    long = pred.generate("dora has 2 cats.", max_new_tokens=60)  # past the 32-token context: a sliding window
    assert isinstance(long[0], str)
    greedy_bob = pred.generate("bob", max_new_tokens=10)[0]
    assert all(pred.generate("bob", max_new_tokens=10, temperature=1.5, top_k=1, seed=s)[0] == greedy_bob
               for s in range(3))  # top-k 1 leaves one candidate: sampling is greedy
    assert pred.generate("", max_new_tokens=24, repetition_penalty=3.0)[0] != greedy
    capsys.readouterr()
    options = ["--max-new-tokens", "8", "--temperature", "0.8", "--top-k", "5", "--repetition-penalty", "1.3"]
    assert main(["generate", str(run.path), "--prompt", "anna", "--stream", *options]) == 0
    want = pred.generate("anna", max_new_tokens=8, temperature=0.8, top_k=5, repetition_penalty=1.3)[0]
    assert capsys.readouterr().out == want + "\n"
    other = tmp_path / "other.txt"  # foundry evaluate: the run's scores on another corpus, a file of its own kind
    other.write_text("\n".join(f"{n} has {k} cats." for n in ("anna", "bob") for k in range(1, 9)), encoding="utf-8")
    assert main(["evaluate", str(run.path), str(other)]) == 0
    scored = json.loads((run.path / "evaluations" / "other.json").read_text())["test"]
    assert scored["documents"] == 16 and scored["perplexity"] < unigram["perplexity"]
    (tmp_path / "tiny.txt").write_text("anna.\n", encoding="utf-8")
    capsys.readouterr()
    assert main(["evaluate", str(run.path), str(tmp_path / "tiny.txt")]) == 2
    assert re.search(r"tiny.txt: 6 tokens \(1 documents.*fewer than one block of 32", capsys.readouterr().err)
    with pytest.raises(ValueError, match="no predictions per row"):
        pred.predict(["anna"])


def test_the_pretrained_model_directory_is_the_start_of_a_classifier(tmp_path):
    with pytest.raises(ConfigError, match="'run:lm': no complete run"):
        load_config(tiny_config(tmp_path, {"path": "x.csv"}, model={"type": "pretrained", "path": "run:lm"}))
    base = train(cfg_for(tmp_path, {"path": corpus(tmp_path)}, TINY_GPT, epochs=1))
    rows = pd.read_csv(SAMPLE).head(120)
    rows.to_csv(tmp_path / "intents.csv", index=False)
    cfg = load_config(tiny_config(tmp_path, {"path": str(tmp_path / "intents.csv"), "target": "category"},
                                  model={"type": "pretrained", "path": "run:lm", "finetune": "full"},
                                  train={"epochs": 1}, name="clf"))
    assert cfg.model.path == str((base.path / "model").resolve())  # run:NAME = that name's newest complete run
    run = train(cfg)
    assert Run.open(run.path).status == "complete"
    clf = Predictor.load(run.path)
    assert len(clf.predict(rows.head(3)[["text"]])) == 3
    with pytest.raises(ValueError, match="a classification model does not generate text"):
        clf.generate("hello")


def test_mlm_from_scratch_learns_and_refuses_to_generate(tmp_path):
    cfg = cfg_for(tmp_path, {"path": corpus(tmp_path), "task": "mlm", "text": {"tokenizer": "wordpiece", "vocab_size": 60},
                             "corpus": {"block_size": 32, "whole_word_mask": True}}, TINY_BERT)
    run = train(cfg)
    m = json.loads((run.path / "metrics.json").read_text())
    assert m["test"]["perplexity"] < m["baselines"]["unigram (training token frequencies)"]["perplexity"]
    assert "bits_per_byte" not in m["test"]  # defined for next-token prediction only
    with pytest.raises(ValueError, match="masked-LM .* does not generate"):
        Predictor.load(run.path).generate("anna")


def test_a_resumed_pretraining_run_matches_an_uninterrupted_one(tmp_path):
    path = corpus(tmp_path)
    data = {"path": path, "task": "mlm", "text": {"tokenizer": "wordpiece", "vocab_size": 60}}
    ref = train(cfg_for(tmp_path, data, TINY_BERT, epochs=3, out="ref"))

    def stop(record):
        if record["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg_for(tmp_path, data, TINY_BERT, epochs=3, out="cut"), on_epoch=stop)
    cut = next((tmp_path / "cut" / "lm").iterdir())
    streams = sorted(cut.glob("cache/corpus-*/*.bin"))
    mtimes = [p.stat().st_mtime_ns for p in streams]
    done = resume(cut)
    a = json.loads((ref.path / "metrics.json").read_text())["test"]
    b = json.loads((done.path / "metrics.json").read_text())["test"]
    assert a == b  # same blocks, same per-epoch cuts and masks after the resume
    assert [p.stat().st_mtime_ns for p in streams] == mtimes  # the packed streams were reused, not rebuilt


@pytest.mark.slow
def test_continued_mlm_of_minilm_reports_the_starting_perplexity_and_improves_it(tmp_path):
    cfg = cfg_for(tmp_path, {"path": corpus(tmp_path, 300), "task": "mlm"},
                  {"type": "pretrained", "path": "minilm", "finetune": "lora"}, epochs=1, lr=2e-3)
    m = json.loads((train(cfg).path / "metrics.json").read_text())
    assert m["test"]["perplexity"] < m["test"]["perplexity_start"]
    assert "starting model (before pretraining)" in m["baselines"]


def test_encoder_decoder_mismatches_are_refused_naming_the_architecture(tmp_path):
    with pytest.raises(ConfigError, match="cannot train model.type gpt, a decoder"):
        cfg_for(tmp_path, {"path": "x.txt", "task": "mlm"}, TINY_GPT)
    with pytest.raises(ConfigError, match="cannot train model.type bert, an encoder"):
        cfg_for(tmp_path, {"path": "x.txt"}, TINY_BERT)
    with pytest.raises(ConfigError, match="model.type gpt pretrains a language model"):
        load_config(tiny_config(tmp_path, {"path": "x.csv"}, model=TINY_GPT))
    cfg = cfg_for(tmp_path, {"path": corpus(tmp_path, 100)}, {"type": "pretrained", "path": "minilm", "finetune": "full"})
    with pytest.raises(ValueError, match=r"BertModel is an encoder \(bert\); data.task clm .* needs a decoder"):
        train(cfg)


def test_bad_corpora_get_clear_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "blank.txt").write_text("\n\n", encoding="utf-8")
    (empty / "bin.dat").write_bytes(b"\x00\x01\x02")
    with pytest.raises(DataError, match=r"no training text .*1 files read, 1 skipped"):
        train(cfg_for(tmp_path, {"path": str(empty)}, TINY_GPT))
    small = tmp_path / "small.txt"
    small.write_text("\n".join(["a few words"] * 30), encoding="utf-8")
    with pytest.raises(DataError, match=r"training split has \d+ tokens .*block_size = 512; set block_size to at most \d+"):
        train(cfg_for(tmp_path, {"path": str(small), "corpus": {"block_size": 512, "val": 0.1, "test": 0.0}}, TINY_GPT))
    from modelfoundry.data.text import train_tokenizer

    big = train_tokenizer(["a few words"], "char", 0, 1, False)
    big.add_tokens([f"w{i}" for i in range(70_000)])
    (tmp_path / "big").mkdir()
    big.save(str(tmp_path / "big" / "tokenizer.json"))
    with pytest.raises(DataError, match="uint16 holds ids up to 65535, but the vocabulary has 70014"):
        train(cfg_for(tmp_path, {"path": str(small), "text": {"tokenizer": str(tmp_path / "big")},
                                 "corpus": {"token_dtype": "uint16", "block_size": 8}}, TINY_GPT))
