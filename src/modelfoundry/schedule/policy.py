"""The dispatching policy: MaskablePPO (sb3-contrib) with a policy that scores every job with the same small network
over that job's features and a summary of all jobs (mean and max), so the score of a job does not depend on where
it sits in the list; the mask leaves only the candidates. Weights are saved as safetensors with a JSON of the
settings (sb3's own save format pickles)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..core.runs import atomic_write_text
from .env import FEATURES


def _no_tensorflow() -> None:
    from ..train.loop import tensorboard_without_tensorflow

    tensorboard_without_tensorflow()  # stable-baselines3 imports TensorBoard, which imports TensorFlow when present


def _extractor_class():
    _no_tensorflow()
    from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

    class JobEncoder(BaseFeaturesExtractor):
        """[B, jobs * FEATURES] -> [B, jobs * hidden]: each job's features with the mean and max over live jobs."""

        def __init__(self, observation_space, jobs: int, hidden: int):
            super().__init__(observation_space, features_dim=jobs * hidden)
            self.jobs, self.hidden = jobs, hidden
            self.local = nn.Sequential(nn.Linear(FEATURES, hidden), nn.Tanh())
            self.mix = nn.Sequential(nn.Linear(3 * hidden, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh())

        def forward(self, obs: torch.Tensor) -> torch.Tensor:
            x = obs.view(obs.shape[0], self.jobs, FEATURES)
            h = self.local(x)
            live = x[..., 1:2]  # unfinished jobs
            mean = (h * live).sum(1, keepdim=True) / live.sum(1, keepdim=True).clamp(min=1)
            peak = torch.where(live > 0, h, torch.full_like(h, -1.0)).max(1, keepdim=True).values
            both = torch.cat([h, mean.expand_as(h), peak.expand_as(h)], dim=-1)
            return self.mix(both).reshape(obs.shape[0], -1)

    return JobEncoder


class JobScores(nn.Module):
    """[B, jobs * hidden] -> [B, jobs] logits, one shared linear map per job."""

    def __init__(self, jobs: int, hidden: int):
        super().__init__()
        self.jobs, self.hidden = jobs, hidden
        self.score = nn.Linear(hidden, 1)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.score(latent.view(latent.shape[0], self.jobs, self.hidden)).squeeze(-1)


def policy_class():
    _no_tensorflow()
    from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy

    class JobPolicy(MaskableActorCriticPolicy):
        """MaskableActorCriticPolicy whose actor is JobScores on the shared job encoder (no extra actor layers)."""

        def _build(self, lr_schedule) -> None:
            super()._build(lr_schedule)
            kw = self.features_extractor_kwargs
            self.action_net = JobScores(kw["jobs"], kw["hidden"])
            self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)

    return JobPolicy


def policy_kwargs(jobs: int, hidden: int) -> dict:
    return {"features_extractor_class": _extractor_class(), "features_extractor_kwargs": {"jobs": jobs, "hidden": hidden},
            "net_arch": {"pi": [], "vf": [hidden]}, "share_features_extractor": True}


def save_policy(policy, out: Path, settings: dict) -> None:
    from safetensors.torch import save_model

    out.mkdir(parents=True, exist_ok=True)
    save_model(policy, str(out / "policy.safetensors.tmp"))  # the actor and critic share the job encoder: one copy
    (out / "policy.safetensors.tmp").replace(out / "policy.safetensors")
    atomic_write_text(out / "policy.json", json.dumps(settings, indent=1))


def load_policy(model_dir: Path):
    """(policy, settings) from a schedule run's model directory."""
    import gymnasium as gym
    from safetensors.torch import load_model

    settings = json.loads((model_dir / "policy.json").read_text(encoding="utf-8"))
    jobs, hidden = settings["jobs"], settings["hidden"]
    obs = gym.spaces.Box(-1.0, 10.0, shape=(jobs * FEATURES,), dtype=np.float32)
    policy = policy_class()(obs, gym.spaces.Discrete(jobs), lambda _: 0.0, **policy_kwargs(jobs, hidden))
    load_model(policy, str(model_dir / "policy.safetensors"))
    policy.eval()
    return policy, settings


def choose_with(policy, jobs: int, deterministic: bool = True, rng: np.random.Generator | None = None):
    """A `choose(shop)` for env.dispatch: the policy's best candidate (or a sample from its masked distribution)."""
    def choose(shop) -> int:
        obs = torch.as_tensor(shop.features(jobs).ravel()[None])
        mask = np.zeros(jobs, dtype=bool)
        mask[: shop.n] = shop.cand
        with torch.no_grad():
            logits = policy.action_net(policy.extract_features(obs, policy.features_extractor))[0].numpy()
        logits = np.where(mask, logits, -np.inf)
        if deterministic:
            return int(np.argmax(logits))
        p = np.exp(logits - logits.max())
        return int(rng.choice(jobs, p=p / p.sum()))
    return choose
