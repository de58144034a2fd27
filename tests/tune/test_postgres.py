"""Two `foundry tune` processes (as on two machines) share one study in a real PostgreSQL.

The server is a throw-away cluster started by the fixture (Debian's postgresql package; `.ci/run` installs it
and sets FOUNDRY_REQUIRE_POSTGRES=1 so that a missing server fails CI instead of skipping), or the one named by
FOUNDRY_TEST_POSTGRES (a URL)."""

import glob
import json
import os
import shutil
import socket
import subprocess
import sys

import pytest

from ..conftest import cli_env, tiny_config, write_yaml


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    hits = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return hits[-1] if hits else None


@pytest.fixture(scope="module")
def postgres_url():
    if os.environ.get("FOUNDRY_TEST_POSTGRES"):
        yield os.environ["FOUNDRY_TEST_POSTGRES"]
        return
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not (initdb and pg_ctl):
        if os.environ.get("FOUNDRY_REQUIRE_POSTGRES"):
            pytest.fail("PostgreSQL is required here (FOUNDRY_REQUIRE_POSTGRES) but initdb/pg_ctl were not found")
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    import tempfile
    from pathlib import Path

    root = Path(tempfile.mkdtemp(prefix="foundry-pg-"))  # not under pytest's 0700 root-owned tmp: postgres must reach it
    data = root / "data"
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []  # postgres refuses to run as root
    if as_user:
        shutil.chown(root, "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    subprocess.run(as_user + [initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
                   check=True, capture_output=True)
    subprocess.run(as_user + [pg_ctl, "-D", str(data), "-w", "-t", "60", "-l", str(root / "log"), "-o",
                              f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off", "start"],
                   check=True, capture_output=True)
    try:
        yield f"postgresql://postgres:unused@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(as_user + [pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
def test_two_processes_share_a_study_in_postgresql_without_losing_or_repeating_a_trial(tmp_path, table_csv, postgres_url):
    import optuna

    raw = tiny_config(tmp_path, {"path": str(table_csv), "target": "label", "split": {"val": 0.25}},
                      train={"epochs": 3, "early_stopping": None})
    raw["tune"] = {"sampler": "random", "trials": 6, "metric": "val_accuracy",
                   "space": {"train.lr": {"log_uniform": [1e-3, 1e-1]}, "model.hidden": {"choice": [[8], [16]]}}}
    path = write_yaml(tmp_path / "tune.yaml", raw)
    cmd = [sys.executable, "-m", "modelfoundry.cli", "tune", str(path), "--storage", postgres_url, "--study", "shared"]
    procs = [subprocess.Popen(cmd, env=cli_env(), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    study = optuna.load_study(study_name="shared", storage=postgres_url)
    trials = study.get_trials()
    numbers = sorted(t.number for t in trials)
    assert numbers == list(range(len(numbers))) and 6 <= len(numbers) <= 7  # none lost; a race may add one
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    runs = [t.user_attrs["run"] for t in trials]
    assert len(set(runs)) == len(runs)  # each trial ran once, in its own run directory
    for r in runs:
        assert json.loads(open(os.path.join(r, "manifest.json")).read())["status"] == "complete"
    assert len({t.user_attrs["pid"] for t in trials}) == 2  # both processes took trials


@pytest.mark.slow
def test_processes_that_open_a_fresh_database_at_the_same_moment_all_succeed(tmp_path, postgres_url):
    """Optuna creates its tables on first open; in PostgreSQL two concurrent CREATE TABLEs of one name collide
    (duplicate key in pg_type). Without the retry in open_storage this fails most of the time with 4 processes."""
    import psycopg

    base = postgres_url
    with psycopg.connect(base.replace("postgres:unused@", "postgres@"), autocommit=True) as conn:
        conn.execute("CREATE DATABASE fresh_race")
    url = base.rsplit("/", 1)[0] + "/fresh_race"
    go = tmp_path / "go"
    code = ("import os, time, optuna; from pathlib import Path; from modelfoundry.tune import open_storage\n"
            f"Path({str(tmp_path)!r}, f'ready{{os.getpid()}}').write_text('')\n"
            f"while not Path({str(go)!r}).exists(): time.sleep(0.005)\n"  # imports done: start together
            f"open_storage({url!r}, Path({str(tmp_path)!r})); print('opened')")
    procs = [subprocess.Popen([sys.executable, "-c", code], env=cli_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    import time

    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob("ready*"))) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    go.write_text("")
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], [o[1][-1500:] for o in outs]
    assert all(o[0].strip() == "opened" for o in outs)
