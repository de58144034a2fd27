"""A pretrained decoder (GPT-2 style) fine-tuned as a causal LM on instruction/response pairs.

The forward pass returns, per example, the summed next-token loss over its response tokens and their count
([B, 2]); the training loop divides the batch's sums, so the loss is the mean over response tokens and the
prompt never contributes. Every `model.finetune` strategy but linear_probe applies (PEFT's CAUSAL_LM task)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from ..core.paths import resolve_model_path
from ..finetune import STRATEGIES, Adapted, adapt, keep_layers
from .base import Built

if TYPE_CHECKING:  # pretrained.py builds this model for data.task causal_lm
    from .pretrained import PretrainedConfig

KEY = "lm"


class Generating:
    """Text generation for a wrapped Hugging Face decoder (`self.model`): greedy or sampled (temperature, top-k, top-p,
    repetition penalty), one prompt at a time, streamed through on_token. A prompt plus its continuation longer than
    the model's context is continued from its last `context` tokens (a sliding window, without the KV cache)."""

    finetune: str = "full"

    @torch.no_grad()
    def generate(self, prompt_ids: list[list[int]], eos_id: int, max_new_tokens: int = 64, temperature: float = 0.0,
                 top_p: float = 1.0, seed: int = 0, on_token=None, top_k: int = 0,
                 repetition_penalty: float = 1.0) -> list[list[int]]:
        """Continue each prompt until end-of-text or `max_new_tokens`; greedy when temperature is 0.
        Returns the new token ids only (without the end-of-text token). on_token(id), if given, is called with each
        new token as it is made (streaming), end-of-text included. Sampling is seeded with `seed` on a fork of torch's
        random state: the caller's random stream (a training loop's, say) is left where it was."""
        self.eval()
        device = next(self.parameters()).device
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            return self._generate_each(prompt_ids, eos_id, max_new_tokens, temperature, top_p, on_token, top_k,
                                       repetition_penalty)

    def _generate_each(self, prompt_ids: list[list[int]], eos_id: int, max_new_tokens: int, temperature: float,
                       top_p: float, on_token, top_k: int, repetition_penalty: float) -> list[list[int]]:
        context = getattr(self.model.config, "n_positions", None) or getattr(self.model.config, "max_position_embeddings", None)
        out = []
        for ids in prompt_ids:  # one at a time: no left-padding rules to get wrong, and CPU batches are small
            x = torch.tensor([ids], device=next(self.parameters()).device)
            too_long = context is not None and len(ids) + max_new_tokens > context
            if self.finetune == "prompt" or too_long:  # PEFT 0.21's prompt-tuning generate overruns GPT-2's positions
                new = self._generate_uncached(x, eos_id, max_new_tokens, temperature, top_p, on_token, top_k,
                                              repetition_penalty, context)
            else:
                kw = ({"do_sample": True, "temperature": temperature, "top_p": top_p, "top_k": top_k or None}
                      if temperature > 0 else {"do_sample": False})
                if repetition_penalty != 1.0:
                    kw["repetition_penalty"] = repetition_penalty
                if on_token is not None:
                    kw["streamer"] = _Streamer(on_token)
                y = self.model.generate(input_ids=x, attention_mask=torch.ones_like(x), max_new_tokens=max_new_tokens,
                                        eos_token_id=eos_id, pad_token_id=eos_id, **kw)
                new = y[0, x.shape[1]:].tolist()
            out.append(new[: new.index(eos_id)] if eos_id in new else new)
        return out

    def _generate_uncached(self, x: torch.Tensor, eos_id: int, max_new_tokens: int, temperature: float,
                           top_p: float, on_token=None, top_k: int = 0, repetition_penalty: float = 1.0,
                           context: int | None = None) -> list[int]:
        """Token by token through the model's plain forward (which prompt tuning supports), no KV cache."""
        new: list[int] = []
        for _ in range(max_new_tokens):
            window = x if context is None else x[:, -context:]
            logits = self.model(input_ids=window, attention_mask=torch.ones_like(window)).logits[0, -1].float()
            if repetition_penalty != 1.0:  # CTRL's penalty, as transformers applies it
                seen = torch.unique(x[0])
                picked = logits[seen]
                logits[seen] = torch.where(picked > 0, picked / repetition_penalty, picked * repetition_penalty)
            if temperature > 0:
                logits = logits / temperature
                if top_k:
                    kth = torch.topk(logits, min(top_k, logits.numel())).values[-1]
                    logits = logits.masked_fill(logits < kth, float("-inf"))
                probs = logits.softmax(-1)
                sorted_p, order = probs.sort(descending=True)
                keep = sorted_p.cumsum(0) - sorted_p < top_p  # nucleus: the smallest set with mass >= top_p
                token = int(order[keep][torch.multinomial(sorted_p[keep], 1)])
            else:
                token = int(logits.argmax())
            if on_token is not None:
                on_token(token)
            if token == eos_id:
                break
            new.append(token)
            x = torch.cat([x, x.new_tensor([[token]])], dim=1)
        return new


class CausalLM(Generating, Adapted, Built):
    def __init__(self, cfg: PretrainedConfig, total_steps: int | None = None):
        super().__init__()
        from transformers import (
            AutoModelForCausalLM,  # deferred: seconds to import; only causal-LM runs need it
        )

        if STRATEGIES[cfg.finetune].frozen:
            raise ValueError("model.finetune: linear_probe trains a head on frozen encodings; a causal LM has no such "
                             "head. Use full, lora, adalora, ia3, prefix or prompt")
        path = resolve_model_path(cfg.path)
        try:
            model = AutoModelForCausalLM.from_pretrained(path, use_safetensors=True)
        except ValueError as exc:
            raise ValueError(f"model.path: {path} is not a causal (decoder) language model: {exc}") from None
        if cfg.layers is not None:
            keep_layers(model, cfg.layers)
        self.model = adapt(model, cfg.finetune, cfg.adapter, total_steps, "CAUSAL_LM", cfg.freeze_layers)
        self.finetune, self.layer_lr_decay = cfg.finetune, cfg.layer_lr_decay

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        ids, lengths, target = batch[f"text:{KEY}"], batch[f"len:{KEY}"], batch[f"segment:{KEY}"]
        mask = (torch.arange(ids.shape[1], device=ids.device)[None, :] < lengths[:, None]).long()
        logits = self.model(input_ids=ids, attention_mask=mask).logits
        logits = logits[:, logits.shape[1] - ids.shape[1]:]  # prompt tuning prepends virtual tokens
        nll = F.cross_entropy(logits[:, :-1].float().transpose(1, 2), ids[:, 1:], reduction="none")
        weight = target[:, 1:].to(nll.dtype)  # token t+1 is predicted at t; only response tokens count
        return torch.stack([(nll * weight).sum(1), weight.sum(1)], dim=1)

class _Streamer:
    """transformers' streamer protocol (put/end): the first put is the prompt, each later one the new token(s)."""

    def __init__(self, on_token):
        self.on_token, self.prompt_seen = on_token, False

    def put(self, value) -> None:
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        for token in value.reshape(-1).tolist():
            self.on_token(int(token))

    def end(self) -> None:
        pass
