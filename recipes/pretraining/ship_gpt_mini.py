"""Copy a finished gpt_mini.yaml run into the package as the embedded decoder `gpt-mini`, with its model card.

    .venv/bin/python recipes/pretraining/ship_gpt_mini.py runs/gpt-mini/<run-id>

Writes src/modelfoundry/embedded/gpt-mini/: the plain Hugging Face files (config.json, model.safetensors,
generation_config.json, tokenizer.json, tokenizer_config.json), training_log.jsonl (the run's history), sources.json
(the corpus's sources, their sha256 and licences), README.md (the model card: data, training, metrics, samples,
licence). Writes the files' sha256 sums into modelfoundry/core/paths.py (GPT_MINI_SHA256), which loading checks."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DEST = REPO / "src" / "modelfoundry" / "embedded" / "gpt-mini"
FILES = ["config.json", "model.safetensors", "generation_config.json", "tokenizer.json", "tokenizer_config.json"]
PROMPTS = ["ROMEO:\n", "First Citizen:\nWe are", "问：高血压患者平时要注意什么？\n答：", "《春望》杜甫\n",
           "How do I reset my card PIN", "ModelFoundry is"]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
    run = Path(sys.argv[1]).resolve()
    from modelfoundry.predictor import Predictor

    pred = Predictor.load(run)
    manifest = json.loads((run / "manifest.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    profile = json.loads((run / "data_profile.json").read_text())
    sources = json.loads((HERE / "data" / "gpt_mini.sources.json").read_text(encoding="utf-8"))
    corpus_sha = sha256(HERE / "data" / "gpt_mini.jsonl")
    if DEST.exists():
        shutil.rmtree(DEST)
    DEST.mkdir(parents=True)
    for f in FILES:
        shutil.copy2(run / "model" / f, DEST / f)
    shutil.copy2(run / "history.jsonl", DEST / "training_log.jsonl")
    (DEST / "sources.json").write_text(json.dumps({"corpus_sha256": corpus_sha, "sources": sources}, indent=2,
                                                  ensure_ascii=False) + "\n", encoding="utf-8")
    samples = []
    for p in PROMPTS:
        out = pred.generate(p, max_new_tokens=60, temperature=0.8, top_k=40, repetition_penalty=1.1, seed=0)[0]
        samples.append((p, out))
    cfg = json.loads((DEST / "config.json").read_text())
    test, unigram = metrics["test"], metrics.get("baselines", {}).get("unigram (training token frequencies)", {})
    hist = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines() if line.strip()]
    rows = "\n".join(f"| {s['source']} | {s['documents']:,} | {s['characters']:,} | {s['licence']} |" for s in sources)
    curve = "\n".join(f"| {h['epoch']} | {h['train_loss']:.4f} | {h.get('val_loss', float('nan')):.4f} |" for h in hist)
    shown = "\n\n".join(f"**Prompt** `{json.dumps(p, ensure_ascii=False)}`\n\n```text\n{p}{o}\n```" for p, o in samples)
    weights = (DEST / "model.safetensors").stat().st_size
    card = f"""---
language: [en, zh]
license: apache-2.0
library_name: transformers
pipeline_tag: text-generation
tags: [gpt2, modelfoundry, pretraining, cpu]
model-index:
- name: gpt-mini
  results:
  - task: {{type: text-generation}}
    dataset: {{name: gpt-mini corpus (held-out 2% of documents), type: custom}}
    metrics:
    - {{type: perplexity, value: {test['perplexity']}}}
    - {{type: bits_per_byte, value: {test['bits_per_byte']}}}
---

# gpt-mini: the decoder ModelFoundry ships

A GPT-2-architecture causal language model pretrained from scratch with ModelFoundry's own `data.task: clm`
(recipe: `recipes/pretraining/gpt_mini.yaml`), on two CPU cores, in {manifest['timings']['loop_s'] / 60:.0f} minutes.
Use it as `model.path: gpt-mini` anywhere a local Hugging Face decoder is accepted (causal-LM fine-tuning, LoRA,
continued pretraining), or load this folder with `transformers.AutoModelForCausalLM.from_pretrained`.

It is small ({manifest['parameters']:,} parameters: {cfg['n_layer']} layers x {cfg['n_head']} heads x {cfg['n_embd']}
wide, {cfg['vocab_size']:,} byte-level BPE tokens, a {cfg['n_positions']}-token context) and was trained on
{profile['streams']['train']['tokens']:,} tokens ({metrics.get('split', 'test')} split below): it writes text that
looks like its corpus (Shakespeare's speeches, Tang poems, Chinese medical answers, banking questions), not facts.
It is a base for instruction tuning (`data.task: causal_lm`) and for the alignment stage, and a demonstration of
what pretraining on a laptop gives; it is not an assistant.

## Training data (sources.json lists the files and their sha256)

| source | documents | characters | licence |
|---|---|---|---|
{rows}

Corpus (`recipes/pretraining/build_corpus.py`): sha256 `{corpus_sha}`. 2% of documents held out for validation and
2% for test (whole documents). Nothing else: no web crawl, no personal data beyond what the medical Q&A sample
itself holds (it is a public, anonymised forum sample).

## Training

{manifest['epochs_run']} epochs over {profile['splits']['train']:,} blocks of {profile['block_size']} tokens, batch 16,
AdamW lr 1.5e-3 (weight decay 0.1), 3% warm-up then cosine, gradient clipping 1.0, bf16 autocast
({manifest.get('hardware', {}).get('cpu', 'CPU')}). Per epoch (training_log.jsonl):

| epoch | train loss | validation loss |
|---|---|---|
{curve}

## Evaluation (held-out test documents)

| model | loss (nats/token) | perplexity | bits per byte |
|---|---|---|---|
| gpt-mini | {test['loss']:.4f} | {test['perplexity']:.1f} | {test['bits_per_byte']:.4f} |
| unigram (training token frequencies) | {unigram.get('loss', float('nan')):.4f} | {unigram.get('perplexity', float('nan')):.1f} | {unigram.get('bits_per_byte', float('nan')):.4f} |

## Samples (temperature 0.8, top-k 40, repetition penalty 1.1, seed 0)

{shown}

## Licence and files

Weights: Apache-2.0, like ModelFoundry. The training texts keep their own licences (table above; BANKING77 CC BY 4.0:
Casanueva et al. 2020). Files: config.json, model.safetensors ({weights / 1e6:.1f} MB, fp32), tokenizer.json,
tokenizer_config.json, generation_config.json; ModelFoundry checks their sha256 before loading `gpt-mini`.
"""
    (DEST / "README.md").write_text(card, encoding="utf-8")
    pins = {f: sha256(DEST / f) for f in FILES}
    paths = REPO / "src" / "modelfoundry" / "core" / "paths.py"
    code = paths.read_text(encoding="utf-8")
    start = code.index("GPT_MINI_SHA256 = {")
    end = code.index("}\n", start) + 2
    body = "".join(f'    "{f}": "{h}",\n' for f, h in pins.items())
    comment = ("    # our own decoder, pretrained by recipes/pretraining/gpt_mini.yaml and shipped in the package (its README.md\n"
               "    # is the model card); written by recipes/pretraining/ship_gpt_mini.py. Anything else is refused.\n")
    paths.write_text(code[:start] + "GPT_MINI_SHA256 = {\n" + comment + body + "}\n" + code[end:], encoding="utf-8")
    print(json.dumps(pins, indent=4))
    print(f"weights {weights / 1e6:.1f} MB -> {DEST}; pins written to {paths}")


if __name__ == "__main__":
    main()
