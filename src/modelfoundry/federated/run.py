"""`federated(cfg)`: a config with a `federated:` section -> one complete Run directory. The data is read and split
once (the test split stays with the server), the preprocessor is fitted on the training rows, the rows are spread
over the sites, Flower's strategy runs the rounds, and the global model is saved and evaluated as `foundry train`
saves and evaluates any model: Predictor, serve and compress take it as they are."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..core.infer import TensorData
from ..core.runs import Run, Timer, read_json, write_json
from ..data import data_files, prepare
from ..evaluate import Usage, evaluate_run, write_card
from ..models import save_model
from ..train import make_accelerator
from ..train.loop import validate
from .report import federated_html
from .site import build_sites, global_state

if TYPE_CHECKING:  # the root config composes this stage's section: imported for annotations only
    from ..config import Config


def require_flower() -> None:
    """Flower is the `federated` extra; say how to get it rather than fail on an import deep inside."""
    try:
        import flwr  # noqa: F401
    except ImportError:
        raise ImportError("federated: needs Flower: pip install 'modelfoundry[federated]'") from None


@contextlib.contextmanager
def quiet():
    """The server prints one line per round. Flower's INFO log says the same; transformers' load report and weight
    bars would repeat for every site's model in every round."""
    from transformers.utils import logging as hf_logging

    flower_log, hf_level = logging.getLogger("flwr"), hf_logging.get_verbosity()
    level = flower_log.level
    flower_log.setLevel(logging.WARNING)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        flower_log.setLevel(level)
        hf_logging.set_verbosity(hf_level)
        hf_logging.enable_progress_bar()


def with_partition_column_ignored(cfg: Config) -> Config:
    """The partition column names the site; it is no model input (unless data.types says what it is)."""
    column = cfg.federated.partition.column
    if column is None or column in cfg.data.types:
        return cfg
    return cfg.override({"data.types": {**cfg.data.types, column: "ignore"}})


def federated(cfg: Config, *, run_dir: str | Path | None = None) -> Run:
    """Train the configured model across the federation's sites; returns the complete Run."""
    require_flower()
    if cfg.federated.engine == "deployment":
        from .deploy import run_deployment

        return run_deployment(cfg, run_dir=run_dir)
    from .apps import SITES, client_app
    from .local import LocalGrid

    cfg = with_partition_column_ignored(cfg)
    run = Run(Path(run_dir)) if run_dir is not None else Run.create(Path(cfg.output_dir), cfg.name)
    run.path.mkdir(parents=True, exist_ok=True)
    with run.lock(), run.recording():
        timer = Timer()
        data = prepare(cfg, cache_dir=run.path / "cache")
        run.start(cfg.to_yaml(), cfg.train.seed, data_files(cfg))
        sites = build_sites(cfg, data)
        data.profile["sites"] = [s.profile for s in sites]
        write_json(run.path / "data_profile.json", data.profile)
        data.preprocessor.save(run.model_dir)
        run_id = abs(hash(str(run.path))) % (2 ** 62)
        for s in sites:
            SITES[(run_id, s.index)] = s
        try:
            with quiet():
                model, start, rounds, _ = serve_rounds(cfg, data, run, LocalGrid(client_app, len(sites), run_id, {}),
                                                       len(sites))
        finally:
            for s in sites:
                SITES.pop((run_id, s.index), None)
        return finish(cfg, run, data, model, start, rounds, [s.profile for s in sites], timer)


def serve_rounds(cfg: Config, data, run: Run, grid, sites: int, train_config: dict | None = None
                 ) -> tuple[torch.nn.Module, dict, int, list[dict]]:
    """The server's part on any grid: Flower's strategy from the seeded model; each round's line to history.jsonl.
    `train_config` goes to the sites with every message. Returns (the global model, its scores before round 1, rounds
    run, the sites' profiles as they reported them)."""
    from .apps import Server

    model, names = global_state(cfg, data)
    initial = {k: v.detach().clone() for k, v in model.state_dict().items() if k in names}
    accelerator = make_accelerator(cfg.train.precision)
    split = "val" if "val" in data.encoded and len(data.encoded["val"]) else "test"
    held = TensorData(data.encoded[split].features, data.targets[split])
    start, done = {}, []

    def evaluate(state: dict[str, torch.Tensor]) -> dict:
        model.load_state_dict(state, strict=False)
        scores = validate(model, held, data.task, cfg.train, accelerator, None)
        if split == "test":  # no validation split: the held-out scores are the test split's, named so
            scores = {k.replace("val_", "test_", 1): v for k, v in scores.items()}
        if not start:
            start.update(scores)
        return scores

    def on_round(record: dict) -> None:
        run.append_history(record)
        done.append(record["round"])

    server = Server(cfg, initial, sites, evaluate, on_round)
    final = server.start(grid, train_config, max_weight=len(data.encoded["train"]))
    model.load_state_dict(final, strict=False)
    return model.eval(), start, len(done), [server.recorder.profiles[n] for n in sorted(server.recorder.profiles)]


def finish(cfg: Config, run: Run, data, model, start: dict, rounds: int, sites: list[dict], timer: Timer) -> Run:
    """Save and evaluate the global model like any run's, then add the federation's numbers and report section."""
    saved = save_model(model, cfg.model, model.spec, run.model_dir)
    history = run.history()
    fed = cfg.federated
    full = sum(v.numel() * v.element_size() for k, v in model.state_dict().items() if v.is_floating_point())
    summary = {"engine": fed.engine, "strategy": fed.strategy, "options": fed.options, "rounds": rounds,
               "sites": sites, "start": start,
               "payload": {"full_model_bytes": int(full),
                           "per_site_round_bytes": history[0]["sent_bytes"] // max(history[0]["sites_sampled"], 1)
                           if history else 0},
               "failed": [{"round": h["round"], **f} for h in history for f in h["failed"]]}
    summary["payload"]["share_of_full"] = round(summary["payload"]["per_site_round_bytes"] / max(full, 1), 6)
    if fed.secure_aggregation is not None:
        sa = fed.secure_aggregation
        summary["secure_aggregation"] = {
            "protocol": "SecAgg+ (Flower SecAggPlusWorkflow + secaggplus_mod)", **sa.model_dump(),
            "max_weight": sa.max_weight or len(data.encoded["train"]),
            "rounds_completed": sum(h.get("secure_aggregation") == "completed" for h in history),
            "site_weights_seen_by_server": sum(h.get("site_weights_seen", 0) for h in history)}
    if fed.privacy is not None:
        summary["privacy"] = {"mechanism": "Gaussian, on each site's clipped update (Flower LocalDpMod)",
                              "clip": fed.privacy.clip, "epsilon_per_round": fed.privacy.epsilon,
                              "delta_per_round": fed.privacy.delta, "epsilon": fed.privacy.epsilon * rounds,
                              "delta": fed.privacy.delta * rounds, "composition": "basic (sum over rounds)"}
    # the rows every round's sampled sites train on, local_epochs times: what the cost report multiplies FLOPs by
    usage = Usage(train_rows=round(len(data.encoded["train"]) * fed.fraction), epochs=rounds * fed.local_epochs,
                  seconds=timer(), threads=torch.get_num_threads())
    evaluate_run(run, cfg, data, model, extra_html=federated_html(run, summary, history), usage=usage,
                 keep_training_rows=False)  # the server keeps no site's rows
    result = read_json(run.path / "metrics.json")
    result["federated"] = summary
    write_json(run.path / "metrics.json", result)
    write_card(run, cfg, data.profile, result)
    run.finish("complete", timings={"total_s": timer()}, epochs_run=rounds, saved_model=saved, cost=result["cost"],
               parameters=sum(p.numel() for p in model.parameters()),
               trainable_parameters=sum(p.numel() for p in model.parameters() if p.requires_grad))
    return run
