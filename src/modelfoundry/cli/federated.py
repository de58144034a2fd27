"""`foundry federated join CONFIG --site i`: this machine becomes site i of a federation (a Flower SuperNode that
connects to the SuperLink at federated.superlink; `--data FILE`: the site's own rows, else its share of data.path)."""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..config import load_config
from ..federated.deploy import CONNECT_RETRIES, CONNECT_WAIT_S, flower_env, host_port, join_command, sites_of
from .common import add_set


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["join"])
    p.add_argument("config")
    p.add_argument("--site", type=int, required=True, help="this site's index (0-based)")
    p.add_argument("--data", help="this site's own data file (same columns as the config's); default: its share of "
                                  "data.path")
    p.add_argument("--superlink", help="the SuperLink's host:port (default: federated.superlink)")
    p.add_argument("--port", type=int, help="this SuperNode's local runtime port (default: the SuperLink's + 1 + site)")
    add_set(p)


def run(args) -> int:
    cfg = load_config(args.config, args.overrides)
    if cfg.federated is None:
        raise ValueError(f"{args.config}: no federated: section; nothing to join")
    superlink = args.superlink or cfg.federated.superlink
    host_port(superlink)
    sites = sites_of(cfg)
    if not 0 <= args.site < sites:
        raise ValueError(f"--site {args.site}: the federation has {sites} sites (0..{sites - 1})")
    data = str(Path(args.data).resolve()) if args.data else None
    if data is not None and not Path(data).is_file():
        raise FileNotFoundError(f"--data {args.data}: no such file")
    port = args.port or host_port(superlink)[1] + 1 + args.site
    cmd = join_command(Path(args.config).resolve(), args.site, sites, superlink, port, data)
    # to a file, not a pipe: the SuperNode starts a detached SuperExec that would hold a pipe open after it exits
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "supernode.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(cmd, env=flower_env(), stdout=out, stderr=subprocess.STDOUT)
            shown = 0
            try:
                while True:
                    rc = proc.poll()
                    text = log.read_text(errors="replace")
                    sys.stderr.write(text[shown:])
                    shown = len(text)
                    if rc is not None:
                        break
                    time.sleep(0.5)
            finally:  # interrupted (Ctrl-C, an error here): the SuperNode goes with us, not left running
                if proc.poll() is None:
                    proc.terminate()
                    proc.wait(timeout=15)
    if rc != 0:
        if "could not establish a connection" in text or "Failed to initialize the connection" in text:
            raise ValueError(f"foundry federated join: no SuperLink answered at {superlink} (gave up after "
                             f"{CONNECT_RETRIES} tries, about {CONNECT_RETRIES * CONNECT_WAIT_S:.0f} s); start it with "
                             "`foundry train CONFIG` (federated.engine: deployment) or check federated.superlink")
        raise RuntimeError(f"foundry federated join: the SuperNode exited with code {rc}")
    return 0
