"""The job shop as a sequence of dispatching decisions. At each step some jobs are candidates and the chosen one's
next operation starts as early as its job and machine allow. Which jobs are candidates is the scheme: non_delay,
the jobs whose next operation can start earliest (no machine idles while work could run on it; the rules' classic
setting); active (Giffler and Thompson), the operation that could finish first fixes a machine and every job whose
next operation runs there and could start before that finish is a candidate: every schedule built so is active,
and some active schedule is optimal.
The dispatching rules and the learned policy choose on the same steps, so their makespans compare like for like.

`JobShopEnv` is a gymnasium environment over it (an action = a job; `action_masks()` for MaskablePPO); each job's
features are read by a policy that scores jobs one by one with shared weights (policy.py)."""

from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym
import numpy as np

from .instances import Instance

FEATURES = 8
"""Per job: candidate, unfinished, next duration, remaining work, remaining operations, start slack, job ready
time, remaining work of the next operation's machine (all scaled to about 0..1)."""


class Shop:
    """The dispatching state of one instance."""

    def __init__(self, inst: Instance, scheme: str = "non_delay"):
        self.inst, self.scheme = inst, scheme
        self.d, self.m = inst.durations, inst.machines
        self.n, self.ops = self.d.shape
        self.next = np.zeros(self.n, dtype=np.int64)
        self.job_ready = np.zeros(self.n, dtype=np.int64)
        self.mach_ready = np.zeros(self.ops, dtype=np.int64)
        self.start = np.full((self.n, self.ops), -1, dtype=np.int64)
        self.rem_work = self.d.sum(axis=1).astype(np.int64)
        self.mach_rem = np.bincount(self.m.ravel(), weights=self.d.ravel(), minlength=self.ops)
        self.scale = float(self.d.max())
        self._candidates()

    @property
    def done(self) -> bool:
        return bool((self.next >= self.ops).all())

    @property
    def makespan(self) -> int:
        return int(self.job_ready.max())

    def _candidates(self) -> None:
        live = self.next < self.ops
        self.est = np.zeros(self.n, dtype=np.int64)
        self.cand = np.zeros(self.n, dtype=bool)
        if not live.any():
            return
        j = np.flatnonzero(live)
        o = self.next[j]
        mach = self.m[j, o]
        est = np.maximum(self.job_ready[j], self.mach_ready[mach])
        self.est[j] = est
        if self.scheme == "non_delay":  # what can start earliest
            self.cand[j[est == est.min()]] = True
            return
        ect = est + self.d[j, o]  # Giffler-Thompson: the conflict set on the machine that could finish first
        first = np.argmin(ect)
        star, cstar = mach[first], ect[first]
        self.cand[j[(mach == star) & (est < cstar)]] = True

    def step(self, job: int) -> int:
        """Schedule job's next operation; returns the makespan's increase."""
        if not 0 <= job < self.n or not self.cand[job]:
            raise ValueError(f"job {job} is not a candidate at this step (candidates: {np.flatnonzero(self.cand).tolist()})")
        before = self.makespan
        o = self.next[job]
        mach = self.m[job, o]
        s = self.est[job]
        self.start[job, o] = s
        self.job_ready[job] = s + self.d[job, o]
        self.mach_ready[mach] = s + self.d[job, o]
        self.rem_work[job] -= self.d[job, o]
        self.mach_rem[mach] -= self.d[job, o]
        self.next[job] += 1
        self._candidates()
        return self.makespan - before

    def features(self, jobs: int) -> np.ndarray:
        """[jobs, FEATURES], rows past this instance's jobs zero (a policy trained for more jobs reads fewer)."""
        f = np.zeros((jobs, FEATURES), dtype=np.float32)
        n, s = self.n, self.scale
        live = self.next < self.ops
        o = np.minimum(self.next, self.ops - 1)
        dur = np.where(live, self.d[np.arange(n), o], 0)
        mach = self.m[np.arange(n), o]
        ref = self.est[self.cand].min() if self.cand.any() else 0
        f[:n, 0] = self.cand
        f[:n, 1] = live
        f[:n, 2] = dur / s
        f[:n, 3] = self.rem_work / (s * self.ops)
        f[:n, 4] = (self.ops - self.next) / self.ops
        f[:n, 5] = np.where(self.cand, (self.est - ref) / s, 0)
        f[:n, 6] = (self.job_ready - self.job_ready.min()) / (s * self.ops)
        f[:n, 7] = np.where(live, self.mach_rem[mach] / (s * n), 0)
        return f

    def schedule(self) -> list[dict]:
        """One row per operation: job, operation, machine, start, end."""
        return [{"job": j, "operation": o, "machine": int(self.m[j, o]), "start": int(self.start[j, o]),
                 "end": int(self.start[j, o] + self.d[j, o])} for j in range(self.n) for o in range(self.ops)]


RULES: dict[str, Callable[[Shop], np.ndarray]] = {
    "spt": lambda s: -s.d[np.arange(s.n), np.minimum(s.next, s.ops - 1)].astype(float),  # shortest processing time
    "mwkr": lambda s: s.rem_work.astype(float),  # most work remaining
    "mopnr": lambda s: (s.ops - s.next).astype(float),  # most operations remaining
    "fifo": lambda s: -s.job_ready.astype(float),  # the job waiting longest
}
"""Dispatching rules: a score per job, the highest candidate is chosen (ties: the lowest job index)."""


def dispatch(inst: Instance, choose: Callable[[Shop], int], scheme: str = "non_delay") -> Shop:
    """Build a whole schedule, `choose(shop)` picking a candidate job at each step."""
    shop = Shop(inst, scheme)
    while not shop.done:
        shop.step(choose(shop))
    return shop


def by_rule(name: str) -> Callable[[Shop], int]:
    score = RULES[name]

    def choose(shop: Shop) -> int:
        s = np.where(shop.cand, score(shop), -np.inf)
        return int(np.argmax(s))
    return choose


class JobShopEnv(gym.Env):
    """One episode = one instance scheduled; `sample()` gives the next instance (random ones for training).
    Reward: minus the makespan's increase at each step, divided by the instance's longest operation (so the episode's
    return is -makespan / that)."""

    metadata: dict = {}

    def __init__(self, sample: Callable[[np.random.Generator], Instance], jobs: int, scheme: str = "non_delay"):
        self.sample, self.jobs, self.scheme = sample, jobs, scheme
        self.observation_space = gym.spaces.Box(-1.0, 10.0, shape=(jobs * FEATURES,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(jobs)
        self.shop: Shop | None = None

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        inst = self.sample(self.np_random)
        if inst.jobs > self.jobs:
            raise ValueError(f"instance {inst.name} has {inst.jobs} jobs; the policy was built for at most {self.jobs}")
        self.shop = Shop(inst, self.scheme)
        return self.shop.features(self.jobs).ravel(), {}

    def action_masks(self) -> np.ndarray:
        mask = np.zeros(self.jobs, dtype=bool)
        mask[: self.shop.n] = self.shop.cand
        return mask

    def step(self, action: int):
        shop = self.shop
        delta = shop.step(int(action))
        done = shop.done
        info = {"makespan": shop.makespan} if done else {}
        return shop.features(self.jobs).ravel(), -delta / shop.scale, done, False, info
