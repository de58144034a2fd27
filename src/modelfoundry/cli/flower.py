"""The entry points Flower imports for engine deployment (the Flower App's components name them): the ServerApp,
which reads the run's config and runs the federation's server side, and the ClientApp, whose sites are built from
their SuperNode's node config. Not a verb: Flower's processes load this module, as `foundry` loads a verb's."""

from __future__ import annotations

from pathlib import Path

from flwr.app import Context, Message
from flwr.serverapp import Grid, ServerApp

from ..config import load_config
from ..federated.apps import SITE_LOADER, client_app, message_config
from ..federated.deploy import serve_deployment, site_from_message
from ..federated.run import with_partition_column_ignored

__all__ = ["client_app", "server_app"]

server_app = ServerApp()


@server_app.main()
def _main(grid: Grid, context: Context) -> None:
    cfg = load_config(str(context.run_config["config"]))
    serve_deployment(cfg, Path(str(context.run_config["run-dir"])), grid, int(context.run_config["sites"]))


def _site(context: Context, msg: Message):
    node = context.node_config
    cfg = with_partition_column_ignored(load_config(str(node["config"])))
    return site_from_message(cfg, int(node["partition-id"]), int(node["num-partitions"]),
                             str(message_config(msg)["preprocessor"]), str(node["data"]) if "data" in node else None)


SITE_LOADER.append(_site)
