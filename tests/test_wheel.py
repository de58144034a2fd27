"""The built wheel works as a user installs it: a fresh virtual environment (its dependencies, CPU torch among them,
taken from the project's environment through a .pth file, as if already installed), the wheel itself installed
without the source tree, and `foundry quickstart` run from another directory exactly as the README's first command
runs it (package data included; its metrics, report and next-step hints checked)."""

import json
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from .conftest import REPO, cli_env


@pytest.mark.slow
def test_the_wheel_installs_and_runs_the_quickstart_elsewhere(tmp_path):
    dist = tmp_path / "dist"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                            str(dist), str(REPO)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr
    wheel = next(dist.glob("modelfoundry-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "modelfoundry/quickstart/intents.yaml" in names and "modelfoundry/quickstart/banking77_train.csv" in names
    assert not [n for n in names if n.startswith(("tests/", "recipes/", "bench/"))]  # recipes are repo-only

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    purelib = subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    (Path(purelib) / "deps-from-project-env.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    install = subprocess.run([py, "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
                             capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr
    where = subprocess.run([py, "-c", "import modelfoundry; print(modelfoundry.__file__)"], capture_output=True,
                           text=True, cwd=tmp_path, check=True).stdout.strip()
    assert where.startswith(str(venv)), where  # the wheel's copy, not the source tree

    elsewhere = tmp_path / "somewhere-else"
    elsewhere.mkdir()
    res = subprocess.run([venv / "bin" / "foundry", "quickstart", "--output-dir", "runs"], capture_output=True, text=True,
                         cwd=elsewhere, env={**cli_env(), "OMP_NUM_THREADS": "2"}, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    run = Path(res.stdout.strip().splitlines()[-1])  # the run directory is printed last
    assert run.is_relative_to(elsewhere / "runs") and (run / "report.html").exists()
    assert "test accuracy" in res.stderr and "foundry predict" in res.stderr and "foundry serve" in res.stderr
    assert json.loads((run / "manifest.json").read_text())["status"] == "complete"
    assert json.loads((run / "metrics.json").read_text())["test"]["accuracy"] > 0.75  # 77 intents
