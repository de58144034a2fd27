"""Language models for self-supervised pretraining: `type: gpt` (GPT-2 architecture, next-token) and `type: bert` (BERT
architecture, masked tokens) from scratch, with size presets, and continued pretraining of a local Hugging Face model
(`type: pretrained` with data.task clm / mlm; full or a PEFT method). They are Hugging Face models inside, so a run's
model directory is also a plain HF directory (config.json, model.safetensors, tokenizer.json) that `model.path`, or
transformers' from_pretrained, accepts anywhere.

The forward pass returns per block [summed loss, predicted tokens] ([B, 2]), the shape the causal-LM fine-tune uses:
the loop divides the batch's sums, so the loss is the mean per predicted token."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator

from ..core.paths import resolve_model_path
from ..core.schema import Section
from ..core.spec import InputSpec
from ..finetune import STRATEGIES, Adapted, adapt, keep_layers
from .base import Built
from .causal_lm import Generating
from .registry import register

if TYPE_CHECKING:  # pretrained.py builds this model for data.task clm / mlm
    from .pretrained import PretrainedConfig

KEY = "lm"
PRESETS = {  # (layers, heads, width)
    "nano": (4, 4, 128),  # nanoGPT's CPU "baby GPT"
    "mini": (6, 8, 256),  # the shipped gpt-mini
    "small": (12, 12, 768),  # GPT-2 small / BERT-base sizes
}
ENCODER_TYPES = {"bert", "roberta", "xlm-roberta", "distilbert", "albert", "electra", "deberta", "deberta-v2",
                 "camembert", "mpnet", "ernie", "nezha", "megatron-bert", "xlm", "flaubert", "funnel", "layoutlm"}


class _ScratchConfig(Section):
    preset: Literal["nano", "mini", "small"] | None = "mini"
    """Size: nano = 4 layers x 4 heads x 128 wide (nanoGPT's CPU baby GPT), mini = 6 x 8 x 256 (the shipped gpt-mini),
    small = 12 x 12 x 768 (GPT-2 small / BERT-base). layers, heads and width override it."""
    layers: int | None = Field(None, gt=0)
    heads: int | None = Field(None, gt=0)
    width: int | None = Field(None, gt=0)
    """Hidden size; a multiple of heads."""
    dropout: float = Field(0.0, ge=0, lt=1)
    """Dropout on embeddings, attention and residuals (0 for short pretraining runs, as nanoGPT's CPU recipe)."""

    @model_validator(mode="after")
    def _sizes(self):
        if self.preset is None and None in (self.layers, self.heads, self.width):
            raise ValueError("without a preset, give layers, heads and width")
        layers, heads, width = self.size()
        if width % heads:
            raise ValueError(f"width ({width}) must be a multiple of heads ({heads})")
        return self

    def size(self) -> tuple[int, int, int]:
        base = PRESETS[self.preset] if self.preset else (None, None, None)
        return (self.layers or base[0], self.heads or base[1], self.width or base[2])


class GPTConfig(_ScratchConfig):
    type: Literal["gpt"] = "gpt"
    tie_embeddings: bool = True
    """Share the input embedding with the output layer (GPT-2 does; saves vocabulary x width parameters)."""


class BertLMConfig(_ScratchConfig):
    type: Literal["bert"] = "bert"


class LanguageModel(Generating, Adapted, Built):
    """A Hugging Face causal or masked LM under our training loop (see the module docstring)."""

    def __init__(self, model, task: str, finetune: str = "full", layer_lr_decay: float = 1.0):
        super().__init__()
        self.model, self.task, self.finetune, self.layer_lr_decay = model, task, finetune, layer_lr_decay
        self.attention = model.config._attn_implementation

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        ids = batch[f"text:{KEY}"]
        config = self.model.config
        config._attn_implementation, pad = attention_for(ids, self.attention), config.pad_token_id
        # packed blocks hold no padding: no attention mask (building an all-ones one cost 10% of a nano GPT's step), and
        # no pad id for transformers to look for: the pad id is the end-of-text token that joins documents (gpt-mini's,
        # and ours once exported), so a block that starts or ends with one made GPT-2 warn "We strongly recommend
        # passing in an `attention_mask`" when a run scored its test blocks, and all through continued pretraining
        config.pad_token_id = None
        try:
            logits = self.model(input_ids=ids).logits
        finally:  # generation and export see the model's own choice
            config._attn_implementation, config.pad_token_id = self.attention, pad
        logits = logits[:, logits.shape[1] - ids.shape[1]:]  # prompt tuning prepends virtual tokens
        if self.task == "mlm":
            labels = batch[f"labels:{KEY}"]
            nll = F.cross_entropy(logits.float().transpose(1, 2), labels, reduction="none", ignore_index=-100)
            weight = (labels != -100).to(nll.dtype)
        else:
            nll = F.cross_entropy(logits[:, :-1].float().transpose(1, 2), ids[:, 1:], reduction="none")
            weight = torch.ones_like(nll)
        return torch.stack([(nll * weight).sum(1), weight.sum(1)], dim=1)

    def export_hf(self, directory: Path, tokenizer, eos_id: int | None = None) -> None:
        """Write a plain Hugging Face directory (adapters merged into a copy): config.json, model.safetensors,
        tokenizer.json, tokenizer_config.json."""
        model = self.model
        if hasattr(model, "peft_config") and not STRATEGIES[self.finetune].mergeable:
            raise ValueError(f"model.finetune {self.finetune}: its virtual tokens cannot be merged into a plain "
                             "Hugging Face model; the run's own files (weights + base) hold it")
        export_hf(model, directory, tokenizer, eos_id, self.context())

    def context(self) -> int:
        c = self.model.config
        return int(getattr(c, "n_positions", None) or getattr(c, "max_position_embeddings", 512))


def attention_for(ids: torch.Tensor, default: str) -> str:
    """The attention kernel for this step. On a CPU under bf16 autocast, plain matmul attention ("eager"): torch's CPU
    SDPA kernel is slower there in training (its backward above all): measured on a 2-core AMD EPYC (AVX-512 BF16),
    forward + backward + AdamW, GPT-2 nano (4x4x128, 12x64 tokens) 38 -> 26 ms a step, mini (6x8x256, 16x128) 454 ->
    354 ms, a MiniLM-sized BERT (6x12x384, 16x128) 998 -> 818 ms; in fp32 SDPA is as fast or faster, so it stays."""
    if default == "sdpa" and ids.device.type == "cpu" and torch.is_autocast_enabled("cpu") \
            and torch.get_autocast_dtype("cpu") == torch.bfloat16:
        return "eager"
    return default


def _hf_config(cfg: _ScratchConfig, spec: InputSpec):
    from transformers import (  # deferred: seconds to import; only language models need it
        BertConfig,
        GPT2Config,
    )

    layers, heads, width = cfg.size()
    vocab = spec.text[KEY]
    if cfg.type == "gpt":
        return GPT2Config(vocab_size=vocab, n_positions=spec.max_length, n_embd=width, n_layer=layers, n_head=heads,
                          resid_pdrop=cfg.dropout, embd_pdrop=cfg.dropout, attn_pdrop=cfg.dropout,
                          bos_token_id=spec.eos_id, eos_token_id=spec.eos_id,
                          tie_word_embeddings=cfg.tie_embeddings,
                          # GPT-2's tanh GELU in torch's one kernel, not GPT-2's default "gelu_new" (the same
                          # function in eight Python-level ops): a nano GPT's CPU step 43 -> 35 ms, measured
                          activation_function="gelu_pytorch_tanh")
    return BertConfig(vocab_size=vocab, hidden_size=width, num_hidden_layers=layers, num_attention_heads=heads,
                      intermediate_size=4 * width, max_position_embeddings=spec.max_length,
                      hidden_dropout_prob=cfg.dropout, attention_probs_dropout_prob=cfg.dropout, pad_token_id=0)


@register("gpt", GPTConfig, {"text"}, {"clm"})
def build_gpt(cfg: GPTConfig, spec: InputSpec) -> LanguageModel:
    from transformers import GPT2LMHeadModel

    return LanguageModel(GPT2LMHeadModel(_hf_config(cfg, spec)), "clm")


@register("bert", BertLMConfig, {"text"}, {"mlm"})
def build_bert(cfg: BertLMConfig, spec: InputSpec) -> LanguageModel:
    from transformers import BertForMaskedLM

    return LanguageModel(BertForMaskedLM(_hf_config(cfg, spec)), "mlm")


def continued(cfg: PretrainedConfig, spec: InputSpec) -> LanguageModel:
    """Continued (domain-adaptive) pretraining of a local HF model: its LM head (causal or masked), full or PEFT."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForMaskedLM

    if STRATEGIES[cfg.finetune].frozen:
        raise ValueError("model.finetune: linear_probe freezes the whole model; pretraining needs weights that "
                         "train: use full or a PEFT method (lora, ...)")
    path = resolve_model_path(cfg.path)
    config = AutoConfig.from_pretrained(path)
    kind = config.model_type
    is_encoder = kind in ENCODER_TYPES and not getattr(config, "is_decoder", False)
    arch = ", ".join(getattr(config, "architectures", None) or [kind])
    if spec.task == "clm" and is_encoder:
        raise ValueError(f"model.path {path}: {arch} is an encoder ({kind}); data.task clm (next-token) needs a decoder "
                         "such as GPT-2; use data.task mlm for an encoder")
    if spec.task == "mlm" and not is_encoder:
        raise ValueError(f"model.path {path}: {arch} is a decoder ({kind}); data.task mlm (masked tokens) needs an "
                         "encoder such as BERT; use data.task clm for a decoder")
    auto = AutoModelForMaskedLM if spec.task == "mlm" else AutoModelForCausalLM
    model = auto.from_pretrained(path, use_safetensors=True)
    if cfg.layers is not None:
        keep_layers(model, cfg.layers)
    model = adapt(model, cfg.finetune, cfg.adapter, spec.total_steps, "CAUSAL_LM" if spec.task == "clm" else
                  "FEATURE_EXTRACTION", cfg.freeze_layers)
    return LanguageModel(model, spec.task, cfg.finetune, cfg.layer_lr_decay)


def export_hf(model, directory: Path, tokenizer, eos_id: int | None, context: int) -> None:
    """A Hugging Face model (a PEFT adapter merged into a copy) as a plain directory: config.json, model.safetensors,
    tokenizer.json (a `tokenizers` Tokenizer) and tokenizer_config.json (special tokens; eos = `eos_id`)."""
    import copy

    if hasattr(model, "peft_config"):
        model = copy.deepcopy(model).merge_and_unload()
    directory.mkdir(parents=True, exist_ok=True)
    if eos_id is not None:
        model.config.eos_token_id = eos_id
        model.config.pad_token_id = eos_id
        if getattr(model, "generation_config", None) is not None:
            model.generation_config.eos_token_id = eos_id
            model.generation_config.pad_token_id = eos_id
    model.save_pretrained(directory, safe_serialization=True)
    (directory / "tokenizer.json").write_text(tokenizer.to_str(), encoding="utf-8")
    vocab = tokenizer.get_vocab(with_added_tokens=True)
    special = {k: t for k, t in (("unk_token", "[UNK]"), ("pad_token", "[PAD]"), ("cls_token", "[CLS]"),
                                 ("sep_token", "[SEP]"), ("mask_token", "[MASK]")) if t in vocab}
    if eos_id is not None:
        eos = tokenizer.id_to_token(eos_id)
        special.update(eos_token=eos, bos_token=eos)
    (directory / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": context, **special}, indent=2),
        encoding="utf-8")


def load_hf_decoder(directory: Path) -> LanguageModel:
    """A plain Hugging Face decoder directory (an aligned run's model/) as a LanguageModel that generates."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(directory, use_safetensors=True)
    return LanguageModel(model, "clm").eval()
