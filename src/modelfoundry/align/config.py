"""The `align:` section: preference and reward-driven fine-tuning of a decoder on TRL (SFT, reward model, DPO, IPO,
ORPO, KTO, GRPO). TRL's own options pass through `options:` (as `model.adapter` passes through to PEFT)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from ..core.schema import Section

METHODS = ("sft", "reward", "dpo", "ipo", "orpo", "kto", "grpo")
PAIRED = ("reward", "dpo", "ipo", "orpo", "kto")  # read preference pairs (prompt, chosen, rejected)


class RewardSpec(Section):
    """One GRPO reward; give exactly one of run, regex, length, contains, omits, function. Rewards add up, each times
    its weight."""

    weight: float = 1.0
    run: str | None = None
    """A run directory (or run:NAME): a reward-model run (align.method reward) scores prompt + reply; any classifier
    of ours gives the probability of `label` for the reply alone; a regressor gives its predicted value."""
    label: str | None = None
    """With a classifier run: the class whose probability is the reward (e.g. positive)."""
    regex: str | None = None
    """1 when the reply matches (re.fullmatch over the stripped reply with `match: full`, re.search with search)."""
    match: Literal["full", "search"] = "search"
    length: tuple[int, int] | None = None
    """[min, max] characters: 1 inside the window, falling linearly to 0 at half the window's distance outside."""
    contains: list[str] | None = None
    """The share of these words the reply contains."""
    omits: list[str] | None = None
    """1 when the reply contains none of these words, else 0."""
    function: str | None = None
    """A Python function `module:function` or `file.py:function` (relative to the config file), called as TRL calls
    reward functions: f(completions=[...], prompts=[...], **data columns) -> list of floats."""

    @model_validator(mode="after")
    def _one_kind(self) -> RewardSpec:
        given = [k for k in ("run", "regex", "length", "contains", "omits", "function") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of run, regex, length, contains, omits, function"
                             + (f"; got {', '.join(given)}" if given else ""))
        if self.label is not None and self.run is None:
            raise ValueError("label applies to a run reward")
        if self.length is not None and not 0 <= self.length[0] <= self.length[1]:
            raise ValueError(f"length: expected [min, max] with 0 <= min <= max, got {list(self.length)}")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in ("run", "regex", "length", "contains", "omits", "function") if getattr(self, k) is not None)


class GuardConfig(Section):
    """GRPO's guard against reward hacking: the diversity of the replies it trains on, watched as it goes."""

    min_distinct_2: float = Field(0.5, ge=0, le=1)
    """Act when distinct-2 of the replies (distinct token bigrams / all bigrams, over the last `window` steps) falls
    below this share of its value over the first `window` steps."""
    window: int = Field(10, gt=0)
    greedy_prompts: int = Field(0, ge=0)
    """Also decode this many training prompts greedily with the policy every `window` steps and watch the distinct-2 of
    those replies against its value before training (the same min_distinct_2 rule). The sampled training replies can
    stay varied while the greedy ones collapse (the Tang recipe: sampled 0.97 -> 0.89, greedy 0.26 -> 0.11); costs one
    greedy decode of these prompts per window."""
    action: Literal["warn", "stop"] = "stop"
    """warn = record it in the history and the report; stop = also end training there (the model so far is kept)."""


class AlignConfig(Section):
    method: Literal["sft", "reward", "dpo", "ipo", "orpo", "kto", "grpo"]
    """sft = supervised fine-tuning on prompt/completion pairs (loss on the completion); reward = a Bradley-Terry reward
    model (a scalar head) on preference pairs; dpo / ipo / orpo / kto = preference optimisation on pairs (kto sees each
    pair as one desirable and one undesirable reply); grpo = group-relative policy optimisation against `rewards` on
    prompts. All through TRL."""
    prompt: str = "prompt"
    """The prompt column: text, or chat messages ([{role, content}] or ShareGPT [{from, value}])."""
    chosen: str = "chosen"
    """Preference pairs: the preferred reply (text, one message, or messages whose last is the reply)."""
    rejected: str = "rejected"
    """Preference pairs: the other reply."""
    completion: str = "completion"
    """sft: the reply column."""
    template: str | None = None
    """How a prompt is shown to a model whose tokenizer has no chat template: must contain {prompt}. Default: the
    template of the causal-LM run given as model.path, else data.prompt_template ("{prompt}\\n"). Chat messages become
    "role: content" lines first. The template used is recorded in metrics.json."""
    max_length: int | None = Field(None, gt=0)
    """Prompt + reply tokens; default the model's context. Longer prompts are truncated from the left and counted, or
    refused with `too_long: error`."""
    too_long: Literal["truncate", "error"] = "truncate"
    max_new_tokens: int = Field(64, gt=0)
    """Reply length for grpo's rollouts (TRL's max_completion_length unless options set it), samples and win rates."""
    rewards: list[RewardSpec] = []
    """grpo: the rewards, summed with their weights (TRL's reward_weights)."""
    judge: str | None = None
    """A reward-model run (or run:NAME) that judges the win rate of the aligned model against the reference on held-out
    prompts; grpo uses its run rewards when this is not set."""
    eval_prompts: int = Field(200, ge=0)
    """Held-out prompts to generate on for win rates, rule-reward compliance and diversity (0 = skip generation)."""
    eval_temperature: float = Field(0.0, ge=0)
    """How the held-out replies are decoded: 0 = greedy; above 0 = sampled at this temperature (seeded with
    train.seed), as models that write verse or stories are used: a small model's greedy replies repeat themselves
    (the Tang recipe's SFT model: distinct-2 0.25 greedy, 0.81 sampled at 0.7). When sampling, the greedy replies'
    diversity and rule-reward full marks are reported beside (generation.greedy)."""
    samples: list[str] = []
    """Fixed prompts whose replies before and after alignment are shown side by side in the report (default: the first
    five held-out prompts)."""
    guard: GuardConfig = GuardConfig()
    options: dict[str, Any] = {}
    """Passed to TRL's SFTConfig / RewardConfig / DPOConfig / ORPOConfig / KTOConfig / GRPOConfig, which validate them
    (beta, loss_type, num_generations, temperature, max_completion_length, label_smoothing, ...). The train section
    gives lr, epochs, max_steps, batch_size, grad_accum, weight_decay, warmup_ratio, schedule, grad_clip and seed."""

    @model_validator(mode="after")
    def _fits(self) -> AlignConfig:
        if self.method == "grpo" and not self.rewards:
            raise ValueError("method grpo needs rewards: e.g. [{run: runs/sentiment, label: positive}] or "
                             "[{regex: '...'}, {length: [20, 80]}]")
        if self.method != "grpo" and self.rewards:
            raise ValueError(f"rewards apply to method grpo, not {self.method}")
        if self.template is not None and "{prompt}" not in self.template:
            raise ValueError(f"template must contain {{prompt}}, got {self.template!r}")
        if self.method == "reward" and self.judge is not None:
            raise ValueError("judge applies to the methods that generate (sft, dpo, ipo, orpo, kto, grpo)")
        return self
