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
from flwr.serverapp import Grid

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


def privacy_mod(msg: Message, context: Context, call_next):
    """Flower's LocalDpMod on training replies when the config asks for privacy (sensitivity = the clipping norm)."""
    dp = site_of(context, msg).cfg.federated.privacy
    if dp is None or msg.metadata.message_type != MessageType.TRAIN:
        return call_next(msg, context)
    return LocalDpMod(dp.clip, dp.clip, dp.epsilon, dp.delta)(msg, context, call_next)


client_app = ClientApp(mods=[privacy_mod])


@client_app.train()
def _train(msg: Message, context: Context) -> Message:
    site = site_of(context, msg)
    config = msg.content["config"]
    rnd = int(config["server-round"])
    fail = site.cfg.federated.fail
    if fail is not None and fail.site == site.index and rnd in fail.rounds:
        raise RuntimeError(f"site {site.index} ({site.name}) failed in round {rnd} (federated.fail)")
    state = msg.content["arrays"].to_torch_state_dict()
    sent, metrics = site.fit(state, float(config["proximal-mu"]) if "proximal-mu" in config else 0.0, rnd)
    return Message(RecordDict({"arrays": ArrayRecord(torch_state_dict=sent), "metrics": MetricRecord(metrics),
                               "site": _about(site)}), reply_to=msg)


@client_app.evaluate()
def _evaluate(msg: Message, context: Context) -> Message:
    site = site_of(context, msg)
    scores = site.evaluate(msg.content["arrays"].to_torch_state_dict())
    return Message(RecordDict({"metrics": MetricRecord(scores),
                               "site": _about(site)}), reply_to=msg)


# -- the server side ------------------------------------------------------------------------------------------------

def nbytes(record: ArrayRecord) -> int:
    return sum(int(a.numpy().nbytes) for a in record.values())


class RecordingGrid(Grid):
    """The grid the strategy talks to, passing everything to the real one and keeping what each round sent and got:
    bytes of weights each way, every site's metrics, failures."""

    def __init__(self, grid: Grid):
        self.grid = grid
        self.rounds: dict[int, dict] = {}
        self.profiles: dict[str, dict] = {}

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
        rnd = int(messages[0].content["config"]["server-round"])
        log = self.rounds.setdefault(rnd, {"train": {}, "evaluate": {}, "failed": [], "sent_bytes": 0,
                                           "received_bytes": 0})
        if kind == "train":
            log["sent_bytes"] += sum(nbytes(m.content["arrays"]) for m in messages)
            log["sampled"] = len(messages)
        answered = set()
        for r in replies:
            answered.add(r.metadata.reply_to_message_id)
            if r.has_error():
                log["failed"].append({"node": r.metadata.src_node_id, "stage": kind, "reason": r.error.reason})
                continue
            name = str(r.content["site"]["name"])
            self.profiles[name] = json.loads(str(r.content["site"]["profile"]))
            log[kind][name] = {k: float(v) for k, v in r.content["metrics"].items()}
            if kind == "train":
                log["received_bytes"] += nbytes(r.content["arrays"])
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
        self.strategy = build_strategy(cfg.federated, sites)
        self.evaluate, self.on_round = evaluate, on_round
        self.started = time.perf_counter()

    def start(self, grid: Grid, train_config: dict | None = None) -> dict[str, torch.Tensor]:
        fed = self.cfg.federated
        random.seed(self.cfg.train.seed)  # Flower samples sites with `random`
        recorder = self.recorder = RecordingGrid(grid)
        clock = {"t": time.perf_counter()}

        def evaluate_fn(rnd: int, arrays: ArrayRecord) -> MetricRecord:
            scores = self.evaluate(arrays.to_torch_state_dict())
            if rnd > 0:
                self.on_round(self._record(rnd, scores, recorder.rounds.get(rnd, {}), time.perf_counter() - clock["t"]))
            clock["t"] = time.perf_counter()
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
                  "failed": log.get("failed", []), "seconds": round(seconds, 3)}
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

