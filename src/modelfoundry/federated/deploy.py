"""engine deployment: Flower's SuperLink, one SuperNode per site and `flwr run`, as separate processes over HTTP.
`foundry train` starts the SuperLink (and, with start_sites, every site's SuperNode here on loopback); a real site runs
`foundry federated join CONFIG --site i [--data FILE]` on its own machine. The ServerApp and ClientApp are
modelfoundry.cli.flower's (the entry points Flower imports); this module holds what they do."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..core.runs import Run, Timer, atomic_write_text, write_json
from ..data import DataError, Prepared, Preprocessor, data_files, load_clean, prepare, read_frame
from ..data.split import smiles_column, split_frame
from .partition import label_codes, label_mix
from .site import Site, build_sites, local_config

if TYPE_CHECKING:  # the root config composes this stage's section: imported for annotations only
    from ..config import Config

QUIET = {"FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1", "OMP_NUM_THREADS": "1",
         "HF_HUB_OFFLINE": "1"}
CONNECT_RETRIES, CONNECT_WAIT_S = 5, 2.0  # a SuperNode gives up on an unreachable SuperLink after about 10 s


def flower_env(home: Path | None = None) -> dict[str, str]:
    """Flower's processes start further Flower tools by name: this Python's scripts come first on PATH."""
    env = {**os.environ, **QUIET, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    if home is not None:
        env["FLWR_HOME"] = str(home)
    return env


def host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"federated.superlink: expected host:port, got {address!r}")
    return host, int(port)


def _tool(name: str) -> str:
    path = Path(sys.executable).parent / name
    return str(path) if path.exists() else (shutil.which(name) or name)


def superlink_command(cfg: Config, state_dir: Path) -> list[str]:
    host, port = host_port(cfg.federated.superlink)
    return [_tool("flower-superlink"), "--insecure", "--host", host, "--port", str(port),
            "--database", str(state_dir / "superlink.db"), "--disable-runtime-dependency-installation"]


def join_command(config_path: Path, site: int, sites: int, superlink: str, port: int, data: str | None = None
                 ) -> list[str]:
    """A SuperNode for one site: its node config names the config file, the site and (optionally) its own data."""
    node = f'partition-id={site} num-partitions={sites} config="{config_path}"' + (f' data="{data}"' if data else "")
    return [_tool("flower-supernode"), "--insecure", "--superlink", superlink, "--port", str(port),
            "--node-config", node, "--max-retries", str(CONNECT_RETRIES), "--max-wait-time", str(CONNECT_WAIT_S)]


def write_app(run: Run, cfg: Config) -> Path:
    """The Flower App `flwr run` ships to the SuperLink: only its pyproject.toml, naming our entry points."""
    app = run.path / "flower_app"
    app.mkdir(exist_ok=True)
    atomic_write_text(app / "pyproject.toml", f'''[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "foundry-{cfg.name.lower().replace('_', '-').replace('.', '-')}"
version = "1.0.0"
dependencies = []

[tool.hatch.build.targets.wheel]
packages = ["."]

[tool.flwr.app]
publisher = "modelfoundry"

[tool.flwr.app.components]
serverapp = "modelfoundry.cli.flower:server_app"
clientapp = "modelfoundry.cli.flower:client_app"

[tool.flwr.app.config]
config = "{run.path / 'config.yaml'}"
run-dir = "{run.path}"
sites = {sites_of(cfg)}
''')
    return app


def sites_of(cfg: Config) -> int:
    """How many sites the federation waits for: federated.clients, or the partition column's values."""
    fed = cfg.federated
    if fed.clients is not None:
        return fed.clients
    if fed.partition.method != "column":
        return 2
    frame = read_frame(cfg, cfg.data.path)
    return int(frame[fed.partition.column].nunique())


def run_deployment(cfg: Config, run_dir: str | Path | None = None) -> Run:
    """The federation as Flower deploys it, every process on this machine (loopback) unless start_sites is false."""
    from .run import with_partition_column_ignored

    cfg = with_partition_column_ignored(cfg)
    fed = cfg.federated
    run = Run((Path(run_dir) if run_dir is not None else Run.create(Path(cfg.output_dir), cfg.name).path).resolve())
    run.path.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run.path / "config.yaml", cfg.to_yaml())
    run.update_manifest(status="running", name=run.path.parent.name, run_id=run.path.name)
    n = sites_of(cfg)
    host, port = host_port(fed.superlink)
    logs = run.path / "flower_logs"
    logs.mkdir(exist_ok=True)
    home = run.path / "flower_home"
    home.mkdir(exist_ok=True)
    atomic_write_text(home / "config.toml", f'[superlink]\ndefault = "foundry"\n\n[superlink.foundry]\n'
                                            f'address = "{fed.superlink}"\ninsecure = true\n')
    env = flower_env(home)
    procs: list[subprocess.Popen] = []

    def start(cmd: list[str], log: str) -> subprocess.Popen:
        p = subprocess.Popen(cmd, env=env, stdout=open(logs / log, "wb"), stderr=subprocess.STDOUT,
                             start_new_session=True)
        procs.append(p)
        return p

    joins = [join_command(run.path / "config.yaml", i, n, fed.superlink, port + 1 + i) for i in range(n)]
    print("SuperLink: " + " ".join(superlink_command(cfg, run.path)), file=sys.stderr)
    for i in range(n):
        print(f"site {i}: foundry federated join {run.path / 'config.yaml'} --site {i} --superlink {fed.superlink}",
              file=sys.stderr)
    try:
        link = start(superlink_command(cfg, run.path), "superlink.log")
        _wait_listening(host, port, link, logs / "superlink.log")
        if fed.start_sites:
            for i, cmd in enumerate(joins):
                start(cmd, f"site-{i}.log")
        app = write_app(run, cfg)
        submit = subprocess.run([_tool("flwr"), "run", str(app), "foundry", "--stream"], env=env,
                                stdout=open(logs / "flwr_run.log", "wb"), stderr=subprocess.STDOUT)
    finally:
        for p in procs:  # each in its own session: the group holds the SuperExec it started too
            _signal_group(p, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                _signal_group(p, signal.SIGKILL)
    if run.status != "complete":  # `flwr run` exits 0 even when the ServerApp failed: the run directory says
        tail = (logs / "flwr_run.log").read_text(errors="replace")[-2000:]
        if run.status == "running":
            run.update_manifest(status="failed", error=f"the ServerApp did not finish (flwr run exit {submit.returncode})")
        raise RuntimeError(f"federated (engine deployment): the run did not complete; Flower's log "
                           f"{logs / 'flwr_run.log'} ends:\n{tail}")
    return run


def _signal_group(p: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(p.pid, sig)
    except ProcessLookupError:
        pass


def _wait_listening(host: str, port: int, proc: subprocess.Popen, log: Path, deadline: float = 30.0) -> None:
    import socket

    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"the SuperLink exited (code {proc.returncode}); its log {log}:\n"
                               f"{log.read_text(errors='replace')[-1500:]}")
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex((host, port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"the SuperLink did not listen on {host}:{port} within {deadline:.0f} s; see {log}")


# -- inside the ServerApp and ClientApp processes -------------------------------------------------------------------

def serve_deployment(cfg: Config, run_dir: Path, grid, sites: int) -> None:
    """The ServerApp's work: prepare the server's data, run Flower's rounds over the SuperLink's grid, save the run."""
    from .run import finish, serve_rounds

    run = Run(run_dir)
    timer = Timer()
    with run.recording():
        data = prepare(cfg, cache_dir=run.path / "cache")
        run.start(cfg.to_yaml(), cfg.train.seed, data_files(cfg))
        data.preprocessor.save(run.model_dir)
        shipped = {f.name: f.read_text(encoding="utf-8") for f in sorted(run.model_dir.iterdir())
                   if f.name.startswith(("preprocessor", "tokenizer_"))}
        model, start, rounds, profiles = serve_rounds(cfg, data, run, grid, sites,
                                                      {"preprocessor": json.dumps(shipped)})
        data.profile["sites"] = profiles
        write_json(run.path / "data_profile.json", data.profile)
        finish(cfg, run, data, model, start, rounds, profiles, timer)


def site_from_message(cfg: Config, index: int, sites: int, shipped: str, data_path: str | None) -> Site:
    """A SuperNode's site: the server's preprocessor (shipped in the message); its rows are partition `index` of
    data.path (a loopback federation) or its own file `data_path`, whose columns must be the config's."""
    with tempfile.TemporaryDirectory() as tmp:  # Preprocessor.load reads every file into memory
        for name, text in json.loads(shipped).items():
            atomic_write_text(Path(tmp) / name, text)
        pre = Preprocessor.load(Path(tmp))
    if data_path is None:
        data = prepare(cfg)
        data.preprocessor = pre
        site = build_sites(cfg.override({"federated.clients": sites} if cfg.federated.partition.method != "column"
                                        else {}), data)[index]
        return site
    return own_site(cfg, index, pre, data_path)


def own_site(cfg: Config, index: int, pre: Preprocessor, data_path: str) -> Site:
    d = cfg.data
    frame = read_frame(cfg, data_path)
    needed = [c for c, kind in pre.schema.items() if kind != "ignore"] + [d.target]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise DataError(f"{data_path}: site {index}'s data has no column(s) {', '.join(missing)} that the config's "
                        f"model reads (it has: {', '.join(map(str, frame.columns))})")
    df, _, task, _ = load_clean(cfg, frame, data_path)
    idx = split_frame(df, d.split.model_copy(update={"test": 0.0, "column": None}), task, d.target, cfg.train.seed,
                      True, None, smiles_column(pre.schema))
    frames = {s: df.iloc[i].reset_index(drop=True) for s, i in idx.items() if len(i)}
    encoded = {s: pre.transform(f) for s, f in frames.items()}
    targets = {s: pre.encode_target(f[d.target].iloc[encoded[s].rows]) for s, f in frames.items()}
    data = Prepared(frames, encoded, targets, pre, {"splits": {s: len(e) for s, e in encoded.items()}})
    y = label_codes(targets["train"].numpy(), task)
    classes = [str(c) for c in pre.classes_] if task == "classification" else None
    mix = label_mix(y, classes)
    return Site(index, f"site-{index}", data, local_config(cfg), None,
                {"site": f"site-{index}", "train_rows": len(targets["train"]),
                 "val_rows": len(targets.get("val", [])), "label_mix": mix, "data": str(data_path)})

