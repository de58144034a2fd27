"""Evaluation of self-supervised pretraining: held-out loss, perplexity and (next-token) bits per byte; beside them the
starting model (continued pretraining: what the extra pretraining bought) or a unigram model of the training tokens
(from scratch: what context bought); sample continuations; the report with learning curves."""

from __future__ import annotations

import html
import json
import math
from typing import TYPE_CHECKING

import numpy as np

from ..core.html import page
from ..core.runs import Run, atomic_write_text, write_json
from ..models import build_model
from ..pretrain import CorpusData, corpus_scores
from .lm import loss_curves
from .report import _table

if TYPE_CHECKING:  # the root config composes this stage's section: imported for annotations only
    from ..config import Config

SAMPLES = 3
PROMPT_TOKENS = 16
SAMPLE_TOKENS = 64


def unigram_scores(data: CorpusData, split: str, bytes_per_token: float | None) -> dict:
    """A model that ignores context: each token's training frequency (add-one smoothed), scored on the held-out
    stream. Its perplexity is the number any real language model must beat."""
    vocab = data.preprocessor.vocab_size
    counts = np.ones(vocab, dtype=np.float64)
    train, held = data.blocks["train"], data.blocks[split]
    counts += np.bincount(np.asarray(train.stream, dtype=np.int64), minlength=vocab)[:vocab]
    logp = np.log(counts / counts.sum())
    loss = float(-logp[np.asarray(held.stream, dtype=np.int64)].mean())
    out = {"loss": round(loss, 6), "perplexity": round(math.exp(min(loss, 50.0)), 4), "tokens": int(held.n_tokens)}
    if bytes_per_token:
        out["bits_per_byte"] = round(loss / math.log(2) / bytes_per_token, 6)
    return out


def samples(model, data: CorpusData, split: str, seed: int) -> list[dict]:
    """Continuations of the first tokens of a few held-out blocks (temperature 0.8, top-k 40)."""
    pre, blocks = data.preprocessor, data.blocks[split]
    picks = sorted({int(i) for i in np.linspace(0, len(blocks) - 1, SAMPLES)})
    out = []
    for i in picks:
        ids = blocks.__getitems__([i])["text:lm"][0, :PROMPT_TOKENS].tolist()
        new = model.generate([ids], pre.eos_id, max_new_tokens=SAMPLE_TOKENS, temperature=0.8, top_k=40, seed=seed)[0]
        out.append({"prompt": pre.tokenizer.decode(ids), "generated": pre.tokenizer.decode(new)})
    return out


def evaluate_corpus(run: Run, cfg: Config, data: CorpusData, model) -> dict:
    split = "test" if "test" in data.blocks else "val"
    stream = data.profile["streams"][split]
    bpt = stream["bytes"] / stream["tokens"] if data.task == "clm" else None
    scores = corpus_scores(model, data.blocks[split], max(cfg.train.batch_size, 32), bytes_per_token=bpt)
    result = {"split": split, "blocks": len(data.blocks[split]), split: scores, "test": scores}
    if cfg.model.type == "pretrained":  # continued pretraining: the model as it came, on the same blocks and masks
        start = build_model(cfg.model.model_copy(update={"finetune": "full", "freeze_layers": 0}),
                            data.preprocessor.spec())
        before = corpus_scores(start, data.blocks[split], max(cfg.train.batch_size, 32), bytes_per_token=bpt)
        del start
        scores.update({f"{k}_start": v for k, v in before.items() if k != "tokens"})
        result["baselines"] = {"starting model (before pretraining)": before}
    elif cfg.evaluate.baselines:
        result["baselines"] = {"unigram (training token frequencies)": unigram_scores(data, split, bpt)}
    if data.task == "clm":
        result["samples"] = samples(model, data, split, cfg.train.seed)
    write_json(run.path / "metrics.json", result)
    if cfg.evaluate.report:
        write_corpus_report(run, data, result)
    return result


def write_corpus_report(run: Run, data: CorpusData, result: dict) -> None:
    m = run.manifest()
    img = loss_curves(run, "loss per predicted token (nats)")
    rows = [{"model": "this run", **{k: v for k, v in result["test"].items() if not k.endswith("_start")}}]
    rows += [{"model": k, **v} for k, v in result.get("baselines", {}).items()]
    p = data.profile
    what = "next-token prediction (clm)" if data.task == "clm" else "masked-token prediction (mlm)"
    body = f"""<p>Task: {what} on {html.escape(p['source'])}: {p['files']} file(s), {len(p['skipped_files'])} skipped;
documents and tokens per split {html.escape(json.dumps({s: [v['documents'], v['tokens']] for s, v in p['streams'].items()}))};
vocabulary {p['vocab_size']} ({html.escape(json.dumps(p['tokenizer'], ensure_ascii=False))}); blocks of {p['block_size']}
tokens; best epoch: {m.get('best_epoch', '-')}.</p>
<h2>Held-out loss on the {result['split']} split</h2>{_table(rows)}
<p>Perplexity = exp(loss per token); bits per byte = loss / ln 2 spread over the text's UTF-8 bytes, comparable across
tokenizers (next-token only).</p>
{('<h2>Samples (temperature 0.8, top-k 40)</h2>' + _table(result['samples'])) if result.get('samples') else ''}{img}"""
    name = m.get("name", "run")
    atomic_write_text(run.path / "report.html", page(f"{name} report", name, body, subtitle=run.path.name,
                                                     align="left", wrap=True))
