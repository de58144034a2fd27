"""Secure aggregation (federated.secure_aggregation) on Flower's SecAgg+. Flower 1.42 implements SecAgg+ only for
its legacy workflow (SecAggPlusWorkflow inside DefaultWorkflow, a legacy Strategy, FitIns/FitRes messages), not for
the Message-API strategies the other rounds run on. So a secure federation's server runs that workflow, and the
same ClientApp answers its legacy messages: the weights travel as a list of arrays whose names ride in the config
(`keys`), and each site's name and profile ride in its reply's metrics. Everything else (the sites, their training,
the server's evaluation, each round's line in history.jsonl) is the plain path's."""

from __future__ import annotations

import json
import math
import sys
from typing import TYPE_CHECKING

import numpy as np
import torch
from flwr.app import Context, Message, MessageType, RecordDict
from flwr.common import Code, EvaluateRes, FitRes, Status, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.compat.common import recorddict_compat as compat

if TYPE_CHECKING:
    from .apps import Server
    from .site import Site

STRATEGIES = {"fedavg": "FedAvg", "fedprox": "FedProx", "fedadam": "FedAdam", "fedyogi": "FedYogi"}
RENAMED = {"fraction_train": "fraction_fit", "min_train_nodes": "min_fit_clients",
           "min_evaluate_nodes": "min_evaluate_clients", "min_available_nodes": "min_available_clients"}
"""federated.options in the Message-API strategies' names -> the legacy strategies' (the rest are the same)."""


# -- the site's side ------------------------------------------------------------------------------------------------

def is_legacy(msg: Message) -> bool:
    """A message of the legacy workflow (FitIns/EvaluateIns records), as the secure server sends them."""
    return any(k in msg.content.array_records for k in ("fitins.parameters", "evaluateins.parameters"))


def legacy_config(msg: Message):
    """The config record of a legacy train or evaluate message."""
    records = msg.content.config_records
    return records["fitins.config"] if "fitins.config" in records else records["evaluateins.config"]


def legacy_state(msg: Message) -> dict[str, torch.Tensor]:
    """The global weights of a legacy message, named by its config's `keys`."""
    kind = "fitins" if "fitins.parameters" in msg.content.array_records else "evaluateins"
    arrays = parameters_to_ndarrays(compat.arrayrecord_to_parameters(msg.content.array_records[f"{kind}.parameters"],
                                                                      keep_input=True))
    names = str(legacy_config(msg)["keys"]).split("\n")
    return {n: torch.from_numpy(np.array(a)) for n, a in zip(names, arrays, strict=True)}


def _about(site: Site) -> dict:
    return {"site-name": site.name, "site-profile": json.dumps(site.profile)}


def fit_reply(msg: Message, site: Site, sent: dict[str, torch.Tensor], metrics: dict) -> Message:
    names = str(legacy_config(msg)["keys"]).split("\n")
    rows = int(metrics["num-examples"])
    res = FitRes(Status(Code.OK, "ok"), ndarrays_to_parameters([sent[n].numpy() for n in names]), rows,
                 {"train_loss": float(metrics["train_loss"]), **_about(site)})
    return Message(compat.fitres_to_recorddict(res, keep_input=True), reply_to=msg)


def evaluate_reply(msg: Message, site: Site, scores: dict) -> Message:
    scores = dict(scores)
    rows = int(scores.pop("num-examples"))
    res = EvaluateRes(Status(Code.OK, "ok"), float(scores.get("loss", math.nan)), rows, {**scores, **_about(site)})
    return Message(compat.evaluateres_to_recorddict(res), reply_to=msg)


def range_mod(msg: Message, context: Context, call_next) -> Message:
    """Between SecAgg+'s mod and the privacy mod: a site's weights (after any noise), scaled by its row share, must
    fit SecAgg+'s quantization range, and its rows max_weight; SecAgg+ would clip them silently otherwise."""
    reply = call_next(msg, context)
    if msg.metadata.message_type != MessageType.TRAIN or not is_legacy(msg) or reply.has_error():
        return reply
    config = legacy_config(msg)
    res = compat.recorddict_to_fitres(reply.content, keep_input=True)
    limit, most = float(config["secure-clipping-range"]), float(config["secure-max-weight"])
    site = f"site {context.node_config['partition-id']} ({res.metrics.get('site-name', '?')})"
    if res.num_examples > most:
        raise ValueError(f"{site} trains on {res.num_examples} rows, more than federated.secure_aggregation."
                         f"max_weight {most:g}; raise it to at least {res.num_examples}")
    share = res.num_examples / most
    peak, where = max((float(np.abs(a).max()) * share, i) for i, a in enumerate(parameters_to_ndarrays(res.parameters)))
    if peak > limit:
        name = str(config["keys"]).split("\n")[where]
        raise ValueError(f"{site}: weight {name} reaches {peak:.4g} (times the site's row share), outside "
                         f"federated.secure_aggregation.clipping_range {limit:g}, where SecAgg+ would clip it; "
                         "raise clipping_range")
    return reply


# -- the server's side ----------------------------------------------------------------------------------------------

def _none(_results) -> dict:
    return {}


def build_legacy_strategy(server: Server, initial, evaluate_fn, fit_config, evaluate_config):
    """The legacy Flower strategy for federated.strategy, with federated.options passed through (renamed where the
    legacy classes name them otherwise)."""
    import flwr.server.strategy as legacy

    fed, sites = server.cfg.federated, server.sites
    cls = getattr(legacy, STRATEGIES[fed.strategy])
    sampled = max(1, math.ceil(fed.fraction * sites))
    kwargs = {"fraction_fit": fed.fraction, "fraction_evaluate": fed.fraction, "min_fit_clients": sampled,
              "min_evaluate_clients": sampled, "min_available_clients": sites, "initial_parameters": initial,
              "evaluate_fn": evaluate_fn, "on_fit_config_fn": fit_config, "on_evaluate_config_fn": evaluate_config,
              # the sites' metrics are read per site from their replies (RecordingGrid), not aggregated by Flower
              "fit_metrics_aggregation_fn": _none, "evaluate_metrics_aggregation_fn": _none,
              **{RENAMED.get(k, k): v for k, v in fed.options.items()}}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"federated.options: Flower's {cls.__name__} rejected {fed.options}: {exc}") from None


def start_secure(server: Server, grid, train_config: dict, max_weight: float) -> dict[str, torch.Tensor]:
    """Flower's DefaultWorkflow with SecAggPlusWorkflow as its fit step over `grid`; returns the final global state.
    Each round's line is written after the round's site evaluation, as on the plain path."""
    from flwr.server import LegacyContext, ServerConfig
    from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow
    from flwr.server.workflow.constant import MAIN_PARAMS_RECORD
    from flwr.server.workflow.default_workflows import default_evaluate_workflow

    fed = server.cfg.federated
    sa = fed.secure_aggregation
    if max(1, math.ceil(fed.fraction * server.sites)) < 2:
        raise ValueError(f"federated.secure_aggregation: needs at least 2 sites in a round (a sum of one site's "
                         f"weights is that site's weights); {server.sites} sites at fraction {fed.fraction} sample "
                         "fewer")
    names = list(server.initial)
    dtypes = {n: server.initial[n].dtype for n in names}
    recorder = server.recorder
    scores_of: dict[int, dict] = {}

    def state_of(arrays) -> dict[str, torch.Tensor]:
        return {n: torch.from_numpy(np.asarray(a)).to(dtypes[n]) for n, a in zip(names, arrays, strict=True)}

    def evaluate_fn(rnd: int, arrays, _config):
        scores = server.evaluate(state_of(arrays))
        scores_of[rnd] = scores
        return float(scores.get("val_loss", scores.get("test_loss", math.nan))), {}

    def config(rnd: int) -> dict:
        recorder.current_round = rnd
        return {**(train_config or {}), "server-round": rnd, "keys": "\n".join(names),
                "secure-clipping-range": float(sa.clipping_range), "secure-max-weight": float(max_weight)}

    initial = ndarrays_to_parameters([server.initial[n].numpy() for n in names])
    strategy = build_legacy_strategy(server, initial, evaluate_fn, config, config)
    options = sa.model_dump()
    options["max_weight"] = float(max_weight)
    try:
        secagg = SecAggPlusWorkflow(**options)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"federated.secure_aggregation: Flower's SecAggPlusWorkflow rejected {options}: {exc}") from None
    context = LegacyContext(Context(run_id=grid.run.run_id, node_id=0, node_config={}, state=RecordDict(),
                                    run_config={}), config=ServerConfig(num_rounds=fed.rounds), strategy=strategy)
    completed: list[int] = []

    def fit(grid_, ctx) -> None:
        before = ctx.state.array_records.get(MAIN_PARAMS_RECORD)
        secagg(grid_, ctx)
        if ctx.state.array_records.get(MAIN_PARAMS_RECORD) is not before:  # the unmask stage stored a new aggregate
            completed.append(recorder.current_round)

    def evaluate_and_record(grid_, ctx) -> None:
        default_evaluate_workflow(grid_, ctx)
        rnd = recorder.current_round
        log = recorder.rounds.setdefault(rnd, {})
        log["secure_aggregation"] = "completed" if rnd in completed else "halted"
        if rnd not in completed:
            log.setdefault("failed", []).append({"node": 0, "stage": "secure_aggregation", "reason":
                                                 "SecAgg+ ended the round: fewer sites answered than "
                                                 "reconstruction_threshold; the global model is unchanged"})
            print(f"round {rnd}: secure aggregation halted (too few sites answered)", file=sys.stderr, flush=True)
        server.record_round(rnd, scores_of.get(rnd, {}))

    DefaultWorkflow(fit_workflow=fit, evaluate_workflow=evaluate_and_record)(grid, context)
    if not completed:
        raise RuntimeError("federated: no round produced a global model (secure aggregation ended every round); "
                           "history.jsonl has why")
    arrays = parameters_to_ndarrays(compat.arrayrecord_to_parameters(context.state.array_records[MAIN_PARAMS_RECORD],
                                                                     keep_input=True))
    return state_of(arrays)
