"""scripts/install_torch.sh: the CPU index first, the default index when it does not answer, nothing when torch is
there. A stand-in `python` records each pip call (pip itself is not ours to test; the script's choices are)."""

import os
import stat
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

FAKE = """#!/usr/bin/env bash
echo "$*" >> "$LOG"
if [ "$1" = "-c" ]; then exit "$TORCH_MISSING"; fi
for a in "$@"; do case "$a" in *unreachable*) echo "ERROR: Could not find a version" >&2; exit 1;; esac; done
exit 0
"""


def _run(tmp_path: Path, index: str | None, missing: int = 1) -> tuple[list[str], str]:
    fake = tmp_path / "python"
    fake.write_text(FAKE)
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / "calls.log"
    env = {**os.environ, "LOG": str(log), "TORCH_MISSING": str(missing)}
    env.pop("FOUNDRY_TORCH_INDEX", None)
    if index is not None:
        env["FOUNDRY_TORCH_INDEX"] = index
    p = subprocess.run(["bash", str(REPO / "scripts" / "install_torch.sh"), str(fake)], env=env, capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return log.read_text().splitlines(), p.stderr


def test_unreachable_cpu_index_falls_back_to_the_default_index(tmp_path):
    calls, err = _run(tmp_path, "http://127.0.0.1:9/unreachable")
    pips = [c for c in calls if c.startswith("-m pip")]
    assert len(pips) == 2
    assert "--index-url http://127.0.0.1:9/unreachable" in pips[0] and "torch==2.13.0" in pips[0]
    assert "--index-url" not in pips[1] and pips[1].endswith("torch==2.13.0")
    assert "did not answer; torch 2.13.0 from the default index" in err


@pytest.mark.parametrize("index, expected", [(None, "https://download.pytorch.org/whl/cpu"),
                                             ("http://127.0.0.1:9/simple", "http://127.0.0.1:9/simple")])
def test_the_cpu_index_is_tried_first_and_used_when_it_answers(tmp_path, index, expected):
    calls, err = _run(tmp_path, index)
    pips = [c for c in calls if c.startswith("-m pip")]
    assert len(pips) == 1 and f"--index-url {expected}" in pips[0] and not err


def test_nothing_is_installed_when_torch_is_there_or_asked_for_the_default_index_only(tmp_path):
    calls, _ = _run(tmp_path, None, missing=0)
    assert not [c for c in calls if c.startswith("-m pip")]
    (tmp_path / "default").mkdir()
    calls, _ = _run(tmp_path / "default", "")
    pips = [c for c in calls if c.startswith("-m pip")]
    assert len(pips) == 1 and "--index-url" not in pips[0]
