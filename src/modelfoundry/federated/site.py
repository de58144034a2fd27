"""A site: its own rows (training and validation), the model it rebuilds each round from the global weights, its
local training (the same loop as `foundry train`, for federated.local_epochs) and its evaluation. What travels is the
floating-point state the site trains: frozen weights (a pretrained base under LoRA) and integer buffers never leave."""

from __future__ import annotations

import contextlib
import io
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..data import DataError, Encoded, Prepared
from ..evaluate import metrics as M
from ..evaluate.predict_split import predict_split
from ..models import build_model
from ..train import make_accelerator, train_model
from ..train.loop import total_steps
from .config import FederatedConfig, PoisonConfig
from .partition import MIN_ROWS, label_codes, label_mix, plan

SITE_METRICS = {"classification": ["accuracy", "f1_macro", "roc_auc"], "regression": ["rmse", "mae", "r2"]}
"""What each site reports on its validation rows each round, unless evaluate.metrics names others."""
if TYPE_CHECKING:  # the root config composes this stage's section: imported for annotations only
    from ..config import Config


def travel_names(model: torch.nn.Module) -> list[str]:
    """The state a site trains and sends: floating-point entries of the state dict that are not frozen parameters."""
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    return [k for k, v in model.state_dict().items() if k not in frozen and v.is_floating_point()]


def subset(data: Prepared, rows: dict[str, np.ndarray]) -> Prepared:
    """The same prepared data restricted to sample positions per split (a site's share)."""
    encoded, targets, frames = {}, {}, {}
    for split, idx in rows.items():
        enc = data.encoded[split]
        encoded[split] = Encoded({k: v[idx] for k, v in enc.features.items()}, enc.rows[idx])
        targets[split] = data.targets[split][idx]
        frames[split] = data.frames[split]
    return Prepared(frames, encoded, targets, data.preprocessor, {"splits": {s: len(i) for s, i in rows.items()}})


@dataclass
class Site:
    index: int
    name: str
    data: Prepared
    cfg: Config
    """The run's config with train.epochs = federated.local_epochs and no early stopping (a round is a fixed budget)."""
    poison: PoisonConfig | None = None
    profile: dict = field(default_factory=dict)

    def model(self, state: dict[str, torch.Tensor]) -> torch.nn.Module:
        """The configured model holding the global weights (the same build everywhere: frozen parts are identical)."""
        torch.manual_seed(self.cfg.train.seed)
        model = build_model(self.cfg.model, self.data.preprocessor.spec().with_steps(1))
        _load(model, state)
        return model

    def fit(self, state: dict[str, torch.Tensor], mu: float = 0.0, seed: int = 0) -> tuple[dict, dict]:
        """Train from the global weights on this site's rows; returns (travelling state, metrics).
        `mu` > 0 adds FedProx's proximal term mu/2 ||w - w_global||^2 through the loop's model regulariser."""
        def init(model):
            _load(model, state)
            if mu > 0:
                anchor = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
                own = getattr(model, "regularization", None)

                def proximal():
                    term = sum(((p - anchor[n]) ** 2).sum() for n, p in model.named_parameters() if n in anchor)
                    extra = own() if own is not None else None
                    return mu / 2 * term + (extra if extra is not None else 0)
                model.regularization = proximal

        cfg = self.cfg.override({"train.seed": self.cfg.train.seed + seed})
        train = self.data if "val" not in self.data.encoded else _only_train(self.data)
        with contextlib.redirect_stderr(io.StringIO()):  # each site's epoch lines; the server prints one per round
            model, result = train_model(cfg, train, None, make_accelerator(cfg.train.precision, cfg.train.grad_accum),
                                        init=init)
        sent = {k: v.detach().clone() for k, v in model.state_dict().items() if k in state}
        if self.poison is not None and self.poison.method == "scale":  # a test switch: an attacking site
            sent = {k: state[k] + self.poison.factor * (v - state[k]) for k, v in sent.items()}
        last = result.history[-1] if result.history else {}
        return sent, {"train_loss": float(last.get("train_loss", math.nan)), "num-examples": len(train.targets["train"])}

    def evaluate(self, state: dict[str, torch.Tensor]) -> dict:
        """The global model's metrics on this site's validation rows (its training rows when it has none)."""
        split = "val" if "val" in self.data.encoded and len(self.data.encoded["val"]) else "train"
        names = M.canonical(self.cfg.evaluate.metrics or SITE_METRICS.get(self.data.task), self.data.task)
        scores = predict_split(self.model(state).eval(), self.data, split, names)
        # every site reports the same keys (Flower aggregates only then): a score a site cannot compute (roc_auc on
        # validation rows of one class) is NaN
        return {**{k: float(v) if v is not None else math.nan for k, v in scores.items()},
                "num-examples": len(self.data.targets[split])}


def _only_train(data: Prepared) -> Prepared:
    return Prepared({"train": data.frames["train"]}, {"train": data.encoded["train"]}, {"train": data.targets["train"]},
                    data.preprocessor, data.profile)


def _load(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    missing = [k for k in state if k not in model.state_dict()]
    if missing:
        raise ValueError(f"the global weights do not fit this model: {missing[:3]} ... are not in it")
    model.load_state_dict(state, strict=False)


def local_config(cfg: Config) -> Config:
    """What a site trains with in one round."""
    return cfg.override({"train.epochs": cfg.federated.local_epochs, "train.early_stopping": None,
                         "train.max_steps": None})


def build_sites(cfg: Config, data: Prepared) -> list[Site]:
    """Spread the training and validation rows over the sites (federated.partition); the test rows stay with the
    server. A poisoned site with method flip trains on permuted labels."""
    fed: FederatedConfig = cfg.federated
    column = fed.partition.column
    labels, values = {}, {}
    for split in ("train", "val"):
        if split not in data.encoded:
            continue
        labels[split] = label_codes(data.targets[split].numpy(), data.task)
        if column is not None:
            frame = data.frames[split]
            if column not in frame.columns:
                raise DataError(f"federated.partition.column: '{column}' is not a column of the data "
                                f"(it has: {', '.join(map(str, frame.columns))})")
            values[split] = frame[column].astype(str).to_numpy()[data.encoded[split].rows]
    classes = [str(c) for c in data.preprocessor.classes_] if data.task == "classification" else None
    p = plan(fed.partition, fed.clients, labels["train"], values.get("train"), cfg.train.seed, classes)
    where = {s: p.assign(labels[s], values.get(s), cfg.train.seed + (s == "val")) for s in labels}
    site_cfg = local_config(cfg)
    poisoned = set(fed.poison.sites) if fed.poison is not None else set()
    bad = sorted(poisoned - set(range(p.sites)))
    if bad:
        raise ValueError(f"federated.poison.sites: {bad} are not sites (there are {p.sites}: 0..{p.sites - 1})")
    if fed.fail is not None and fed.fail.site >= p.sites:
        raise ValueError(f"federated.fail.site: {fed.fail.site} is not a site (there are {p.sites}: 0..{p.sites - 1})")
    sites = []
    for i in range(p.sites):
        rows = {s: np.flatnonzero(w == i) for s, w in where.items()}
        if len(rows["train"]) < MIN_ROWS:
            raise DataError(f"federated: site {i} got {len(rows['train'])} training rows; use fewer clients")
        site_data = subset(data, rows)
        poison = fed.poison if i in poisoned else None
        if poison is not None and poison.method == "flip":
            if data.task != "classification":
                raise ValueError("federated.poison.method flip: permutes class labels; this task is "
                                 f"{data.task} (use method scale)")
            y = site_data.targets["train"]
            k = int(data.targets["train"].max()) + 1
            site_data.targets["train"] = (y + 1) % k  # every label wrong
        name = p.names[i] if p.names is not None else f"site-{i}"
        y = labels["train"][rows["train"]]
        mix = label_mix(y, classes)
        sites.append(Site(i, name, site_data, site_cfg, poison,
                          {"site": name, "train_rows": int(len(rows["train"])),
                           "val_rows": int(len(rows.get("val", []))), "label_mix": mix,
                           **({"poisoned": poison.method} if poison is not None else {})}))
    return sites


def global_state(cfg: Config, data: Prepared) -> tuple[torch.nn.Module, list[str]]:
    """The model the federation starts from (seeded as `foundry train` seeds it) and the names that travel."""
    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg.model, data.preprocessor.spec().with_steps(total_steps(cfg.train, 1)))
    return model, travel_names(model)
