"""Flower's two apps for a config's federation. The ClientApp trains and evaluates one site (its mods add local
differential privacy); the server side is Flower's strategy driven by `Server.start`, with our evaluation of the
global model after every round. The same ClientApp and Server run in this process (engine local, local.py) and
under Flower's SuperLink/SuperNodes (engine deployment, deploy.py; the Flower App names modelfoundry.cli.flower's
`server_app` and `client_app`, which wrap these)."""

from __future__ import annotations

import json
import math
import random
import sys
import time
from collections.abc import Callable, Iterable

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.clientapp.mod import LocalDpMod
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS
from flwr.serverapp import Grid

from . import secure
from .site import Site

# -- the client side ------------------------------------------------------------------------------------------------

SITES: dict[tuple[int, int], Site] = {}
"""(run id, site index) -> Site, filled by whoever starts the sites (engine local; `foundry federated join`)."""
SITE_LOADER: list[Callable[[Context, Message], Site]] = []
"""How a SuperNode's ClientApp process builds its site from the first message (modelfoundry.cli.flower registers it)."""


def site_of(context: Context, msg: Message) -> Site:
    key = (context.run_id, int(context.node_config["partition-id"]))
    if key not in SITES:
        if not SITE_LOADER:
            raise RuntimeError(f"site {key[1]} of run {key[0]} was not started")
        SITES[key] = SITE_LOADER[0](context, msg)
    return SITES[key]


def _about(site: Site) -> ConfigRecord:
    return ConfigRecord({"name": site.name, "profile": json.dumps(site.profile)})


def message_config(msg: Message) -> ConfigRecord:
    """The config record the server sent with a train or evaluate message (plain or secure path)."""
    return secure.legacy_config(msg) if secure.is_legacy(msg) else msg.content["config"]


def privacy_mod(msg: Message, context: Context, call_next):
    """Flower's LocalDpMod on training replies when the config asks for privacy (sensitivity = the clipping norm);
    on the secure path its legacy twin, which reads FitRes records."""
    if msg.metadata.message_type != MessageType.TRAIN:
        return call_next(msg, context)
    dp = site_of(context, msg).cfg.federated.privacy
    if dp is None:
        return call_next(msg, context)
    if secure.is_legacy(msg):
        from flwr.client.mod import LocalDpMod as LegacyLocalDpMod

        return LegacyLocalDpMod(dp.clip, dp.clip, dp.epsilon, dp.delta)(msg, context, call_next)
    return LocalDpMod(dp.clip, dp.clip, dp.epsilon, dp.delta)(msg, context, call_next)


def secure_mod(msg: Message, context: Context, call_next):
    """Flower's secaggplus_mod on the messages of the SecAgg+ protocol (the server sends them when the config has
    federated.secure_aggregation); it masks the site's weights before they leave."""
    if msg.metadata.message_type == MessageType.TRAIN and RECORD_KEY_CONFIGS in msg.content.config_records:
        from flwr.client.mod import secaggplus_mod

        return secaggplus_mod(msg, context, call_next)
    return call_next(msg, context)


client_app = ClientApp(mods=[secure_mod, secure.range_mod, privacy_mod])  # the first is the outermost


@client_app.train()
def _train(msg: Message, context: Context) -> Message:
    site = site_of(context, msg)
    config = message_config(msg)
    rnd = int(config["server-round"])
    fail = site.cfg.federated.fail
    if fail is not None and fail.site == site.index and rnd in fail.rounds:
        raise RuntimeError(f"site {site.index} ({site.name}) failed in round {rnd} (federated.fail)")
    legacy = secure.is_legacy(msg)
    state = secure.legacy_state(msg) if legacy else msg.content["arrays"].to_torch_state_dict()
    mu = config.get("proximal-mu", config.get("proximal_mu", 0.0))  # Message-API and legacy FedProx's key
    sent, metrics = site.fit(state, float(mu), rnd)
    if legacy:
        return secure.fit_reply(msg, site, sent, metrics)
    return Message(RecordDict({"arrays": ArrayRecord(torch_state_dict=sent), "metrics": MetricRecord(metrics),
                               "site": _about(site)}), reply_to=msg)


@client_app.evaluate()
def _evaluate(msg: Message, context: Context) -> Message:
    site = site_of(context, msg)
    if secure.is_legacy(msg):
        return secure.evaluate_reply(msg, site, site.evaluate(secure.legacy_state(msg)))
    scores = site.evaluate(msg.content["arrays"].to_torch_state_dict())
    return Message(RecordDict({"metrics": MetricRecord(scores),
                               "site": _about(site)}), reply_to=msg)


# -- the server side ------------------------------------------------------------------------------------------------

def nbytes(record: ArrayRecord) -> int:
    return sum(int(a.numpy().nbytes) for a in record.values())


def payload_bytes(content: RecordDict) -> int:
    """What a message carries: its arrays, and the bytes in its config records (SecAgg+'s keys, shares and masked
    weights travel as bytes)."""
    total = sum(nbytes(r) for r in content.array_records.values())
    for record in content.config_records.values():
        for v in record.values():
            if isinstance(v, bytes):
                total += len(v)
            elif isinstance(v, list):
                total += sum(len(x) for x in v if isinstance(x, bytes))
    return total


def _reply_site(reply: Message) -> tuple[str, dict, dict] | None:
    """(site name, its profile, its metrics) from a train or evaluate reply of either path; None for SecAgg+'s
    protocol replies, which carry no metrics."""
    content = reply.content
    if "site" in content.config_records:
        about = content.config_records["site"]
        return str(about["name"]), json.loads(str(about["profile"])), {k: float(v) for k, v in
                                                                       content["metrics"].items()}
    for kind in ("fitres", "evaluateres"):
        if f"{kind}.metrics" in content.config_records:
            metrics = dict(content.config_records[f"{kind}.metrics"])
            name, profile = str(metrics.pop("site-name")), json.loads(str(metrics.pop("site-profile")))
            metrics = {k: float(v) for k, v in metrics.items()}
            metrics["num-examples"] = float(content.metric_records[f"{kind}.num_examples"]["num_examples"])
            return name, profile, metrics
    return None


class RecordingGrid(Grid):
    """The grid the strategy talks to, passing everything to the real one and keeping what each round sent and got:
    bytes of weights each way, every site's metrics, failures."""

    def __init__(self, grid: Grid):
        self.grid = grid
        self.rounds: dict[int, dict] = {}
        self.profiles: dict[str, dict] = {}
        self.current_round = 0
        """The round the secure path's strategy last configured (SecAgg+'s protocol messages do not carry it)."""

    def set_run(self, run) -> None:
        self.grid.set_run(run)

    @property
    def run(self):
        return self.grid.run

    def create_message(self, content, message_type, dst_node_id, group_id, ttl=None):
        return self.grid.create_message(content, message_type, dst_node_id, group_id, ttl)

    def get_node_ids(self) -> Iterable[int]:
        return self.grid.get_node_ids()

    def push_messages(self, messages):
        return self.grid.push_messages(messages)

    def pull_messages(self, message_ids):
        return self.grid.pull_messages(message_ids)

    def send_and_receive(self, messages, *, timeout=None):
        messages = list(messages)
        replies = list(self.grid.send_and_receive(messages, timeout=timeout))
        if not messages:
            return replies
        kind = messages[0].metadata.message_type.split(".")[0]
        first = messages[0]
        if "config" in first.content.config_records:
            rnd = int(first.content["config"]["server-round"])
        elif secure.is_legacy(first):
            rnd = int(secure.legacy_config(first)["server-round"])
        else:
            rnd = self.current_round
        log = self.rounds.setdefault(rnd, {})
        for key, empty in (("train", {}), ("evaluate", {}), ("failed", []), ("sent_bytes", 0), ("received_bytes", 0),
                           ("site_weights_seen", 0)):
            log.setdefault(key, empty)
        if kind == "train":
            log["sent_bytes"] += sum(payload_bytes(m.content) for m in messages)
            if "arrays" in first.content.array_records or "fitins.parameters" in first.content.array_records:
                log["sampled"] = len(messages)
        answered = set()
        for r in replies:
            answered.add(r.metadata.reply_to_message_id)
            if r.has_error():
                log["failed"].append({"node": r.metadata.src_node_id, "stage": kind, "reason": r.error.reason})
                continue
            if kind == "train":
                log["received_bytes"] += payload_bytes(r.content)
                log["site_weights_seen"] += any(len(a) for a in r.content.array_records.values())
            about = _reply_site(r)
            if about is None:
                continue
            name, self.profiles[name], log[kind][name] = about
        for m in messages:
            if m.metadata.message_id not in answered:
                log["failed"].append({"node": m.metadata.dst_node_id, "stage": kind, "reason": "no reply in time"})
        return replies


SHOWN = ("loss", "accuracy", "f1_macro", "roc_auc", "rmse", "mae", "r2")  # in each round's line


class Server:
    """Flower's strategy over `sites` sites, starting from `initial` (the travelling state); `evaluate(state)` scores
    the global model after each round, and `on_round(record)` receives the round's history line."""

    def __init__(self, cfg, initial: dict[str, torch.Tensor], sites: int, evaluate, on_round):
        from .strategies import build_strategy

        self.cfg, self.initial, self.sites = cfg, initial, sites
        # the secure path builds Flower's legacy strategy instead (secure.py)
        self.strategy = build_strategy(cfg.federated, sites) if cfg.federated.secure_aggregation is None else None
        self.evaluate, self.on_round = evaluate, on_round
        self.started = time.perf_counter()

    def record_round(self, rnd: int, scores: dict) -> None:
        """Round `rnd` is over (its global model scored `scores`): its line goes to on_round."""
        if rnd > 0:
            self.on_round(self._record(rnd, scores, self.recorder.rounds.get(rnd, {}), time.perf_counter() - self.clock))
        self.clock = time.perf_counter()

    def start(self, grid: Grid, train_config: dict | None = None, max_weight: float | None = None
              ) -> dict[str, torch.Tensor]:
        """Run the rounds over `grid`; returns the final global state. `max_weight`: the default bound of a site's
        row count under secure aggregation (the server's training rows)."""
        fed = self.cfg.federated
        random.seed(self.cfg.train.seed)  # Flower samples sites with `random` (and SecAgg+ orders them with it)
        recorder = self.recorder = RecordingGrid(grid)
        self.clock = time.perf_counter()
        if fed.secure_aggregation is not None:
            bound = fed.secure_aggregation.max_weight or max_weight
            if bound is None:
                raise ValueError("federated.secure_aggregation.max_weight: give it (the most training rows a site has)")
            return secure.start_secure(self, recorder, train_config or {}, bound)

        def evaluate_fn(rnd: int, arrays: ArrayRecord) -> MetricRecord:
            scores = self.evaluate(arrays.to_torch_state_dict())
            self.record_round(rnd, scores)
            return MetricRecord({k: v for k, v in scores.items() if isinstance(v, (int, float)) and v is not None})

        result = self.strategy.start(recorder, ArrayRecord(torch_state_dict=self.initial), num_rounds=fed.rounds,
                                     train_config=ConfigRecord(train_config or {}),
                                     evaluate_config=ConfigRecord(train_config or {}), evaluate_fn=evaluate_fn)
        if not result.train_metrics_clientapp:
            raise RuntimeError("federated: no round produced a global model (every site failed); history.jsonl has why")
        return result.arrays.to_torch_state_dict()

    def _record(self, rnd: int, scores: dict, log: dict, seconds: float) -> dict:
        train = log.get("train", {})
        rows = sum(m.get("num-examples", 0) for m in train.values())
        loss = sum(m["train_loss"] * m["num-examples"] for m in train.values()) / rows if rows else math.nan
        evaluated = log.get("evaluate", {})
        sites = {}
        for name in sorted(set(train) | set(evaluated)):
            sites[name] = {"train_loss": train[name]["train_loss"]} if name in train else {}
            sites[name].update({f"val_{k}": v for k, v in evaluated.get(name, {}).items() if k != "num-examples"})
        record = {"epoch": rnd, "round": rnd, "train_loss": round(loss, 6), **scores,
                  "sites_sampled": log.get("sampled", 0), "sites_trained": len(train),
                  "sites": sites, "sent_bytes": log.get("sent_bytes", 0), "received_bytes": log.get("received_bytes", 0),
                  "site_weights_seen": log.get("site_weights_seen", 0),
                  "failed": log.get("failed", []), "seconds": round(seconds, 3)}
        if "secure_aggregation" in log:
            record["secure_aggregation"] = log["secure_aggregation"]
        dp = self.cfg.federated.privacy
        if dp is not None:
            record["epsilon"] = round(dp.epsilon * rnd, 6)  # basic composition over the rounds so far
            record["delta"] = dp.delta * rnd
        shown = "  ".join(f"{k}={v:.4f}" for k, v in record.items() if k.split("_", 1)[-1] in SHOWN
                          and k.split("_", 1)[0] in ("val", "test") and isinstance(v, float))
        print(f"round {rnd:>3}/{self.cfg.federated.rounds}  train_loss={record['train_loss']:.4f}  {shown}"
              f"  sites={len(train)}{'  failed=' + str(len(record['failed'])) if record['failed'] else ''}",
              file=sys.stderr, flush=True)
        return record

