"""The Run directory: the contract between stages.

runs/<name>/<run-id>/ holds config.yaml, manifest.json, data_profile.json, model/, metrics.json,
history.jsonl, report.html, plots/ and checkpoints/. Every file is written atomically; a run is
`complete` only when its manifest says so.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .hardware import hardware


@contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """A temporary file beside `path` to write, renamed over `path` (durably: file and folder synced) when the block
    succeeds and removed when it fails, so `path` is its old self or the whole new file, never a part. The one copy
    behind every atomic write here."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        _fsync_file(tmp)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with replacing(path) as tmp:
        tmp.write_bytes(data)


def fsync_dir(directory: Path) -> None:
    """Make a rename in `directory` durable: without it a power cut can leave the old name or no file at all."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # a platform or file system that cannot open a directory
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_text(df, raw: bool = False, **kwargs) -> str:
    """A report CSV (predictions, changes.csv, leaderboard.csv) that is safe to open in a spreadsheet: a text cell
    starting with = + - @ (a formula to Excel, LibreOffice and Google Sheets: `=HYPERLINK(...)` from a crafted
    input row) gets a leading apostrophe, which spreadsheets show as plain text. Numbers are left as they are.
    raw=True writes the values unchanged, for machine readers."""
    import pandas as pd

    if not raw:
        df = df.copy()
        for col in df.columns:
            if df[col].dtype == object or pd.api.types.is_string_dtype(df[col]):
                df[col] = df[col].map(lambda v: "'" + v if isinstance(v, str) and v.startswith(FORMULA_START) else v)
    return df.to_csv(index=False, **kwargs)


def write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def save_safetensors(path: Path, tensors: dict, metadata: dict[str, str] | None = None) -> None:
    """safetensors, written atomically (temp file, then rename)."""
    # deferred: safetensors.torch loads torch, which core.paths' callers must not need
    from safetensors.torch import save_file

    with replacing(path) as tmp:
        out, seen = {}, set()
        for k, v in tensors.items():  # tied weights (a decoder's embedding and output layer) share storage
            v = v.detach().contiguous().cpu()
            out[k] = v.clone() if v.numel() and v.data_ptr() in seen else v
            seen.add(v.data_ptr())
        save_file(out, str(tmp), metadata=metadata)


def _fsync_file(path: str | Path) -> None:
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def atomic_copy(src: Path, dst: Path) -> None:
    """Copy a file so that `dst` is either absent (or its old self) or the whole copy, never a part."""
    with replacing(dst) as tmp:
        shutil.copyfile(src, tmp)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def fingerprint(path: Path | None) -> str | None:
    """sha256 of a file, or of a folder's relative names and contents."""
    if path is None or not Path(path).exists():
        return None
    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(path)).encode())
        h.update(sha256_file(f).encode())
    return h.hexdigest()


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("modelfoundry", "torch", "transformers", "accelerate", "tokenizers", "scikit-learn", "pandas"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


@dataclass
class Run:
    """A run directory. Create with `Run.create`, open an existing one with `Run.open`."""

    path: Path

    # -- creation and status
    @classmethod
    def create(cls, output_dir: Path, name: str) -> Run:
        """A new, empty run directory `<output_dir>/<name>/<UTC time>-<random>`; a name taken by a run started in the
        same second (tune workers, a loop) is drawn again."""
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        for _ in range(20):
            path = Path(output_dir) / name / f"{stamp}-{secrets.token_hex(2)}"
            try:
                path.mkdir(parents=True, exist_ok=False)
                return cls(path)
            except FileExistsError:
                continue
        raise FileExistsError(f"{Path(output_dir) / name}: no free run id after 20 tries")

    def lock(self) -> RunLock:
        """Hold this run for writing (an OS lock on `.lock`, released when the process ends, however it ends);
        a second process is refused with the holder's PID."""
        return RunLock(self.path)

    def record_files(self) -> dict[str, str]:
        """sha256 of every file under model/, recorded in the manifest for `verify_files`."""
        files = {str(f.relative_to(self.path)): sha256_file(f) for f in sorted(self.model_dir.rglob("*"))
                 if f.is_file() and not f.name.startswith(".")}
        self.update_manifest(files=files)
        return files

    def data_changes(self, files: dict[str, Path | None]) -> list[dict]:
        """The data files (by split) whose sha256 differs from the one recorded when the run started, or that are gone:
        [{split, path, then, now}] (now None = missing). The one fingerprint check: resume and compress ask here."""
        changes = []
        for split, entry in self.manifest().get("data", {}).items():
            path = files.get(split)
            now = fingerprint(path) if path is not None and Path(path).exists() else None
            if now != entry.get("sha256"):
                changes.append({"split": split, "path": str(path or entry.get("path")), "then": entry.get("sha256"),
                                "now": now})
        return changes

    def verify_files(self) -> None:
        """Refuse a model file whose bytes differ from the sha256 the manifest recorded when the run completed (a
        flipped byte, a truncated copy, a file swapped by hand), naming it. Runs from before the record pass."""
        for rel, want in (self.manifest().get("files") or {}).items():
            f = self.path / rel
            if not f.is_file():
                raise ValueError(f"{f}: missing; the run recorded it when it completed (copy the whole run directory)")
            got = sha256_file(f)
            if got != want:
                raise ValueError(f"{f}: sha256 {got[:16]}... differs from the {want[:16]}... recorded when the run "
                                 "completed: the file is corrupt or was changed; refusing to load it")

    @classmethod
    def open(cls, path: str | Path) -> Run:
        p = Path(path)
        if not (p / "manifest.json").is_file():
            raise FileNotFoundError(f"{p}: not a run directory (no manifest.json)")
        return cls(p)

    @property
    def manifest_path(self) -> Path:
        return self.path / "manifest.json"

    @property
    def model_dir(self) -> Path:
        return self.path / "model"

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / "checkpoints"

    def manifest(self) -> dict:
        return read_json(self.manifest_path) if self.manifest_path.is_file() else {}

    def update_manifest(self, **fields: Any) -> dict:
        m = self.manifest()
        m.update(fields)
        write_json(self.manifest_path, m)
        return m

    def start(self, config_yaml: str, seed: int, data_files: dict[str, Path | None]) -> None:
        atomic_write_text(self.path / "config.yaml", config_yaml)
        m = self.manifest()
        self.update_manifest(
            status="running", name=self.path.parent.name, run_id=self.path.name,
            created=m.get("created", _now()), started=_now(), seed=seed, versions=_versions(),
            hardware=hardware(), data={k: {"path": str(v), "sha256": fingerprint(v)} for k, v in data_files.items() if v},
            timings=m.get("timings", {}), resumed=m.get("resumed", -1) + 1 if m else 0,
        )

    def finish(self, status: str, **fields: Any) -> None:
        if status == "complete" and self.model_dir.is_dir():
            self.record_files()
        self.update_manifest(status=status, finished=_now(), **fields)

    @contextmanager
    def recording(self, active: bool = True, on_end: Callable[[str], None] | None = None) -> Iterator[Run]:
        """The run lifecycle, the one copy (train and compress): whatever raises inside marks the run `interrupted`
        (Ctrl-C) or `failed` (or the exception's `run_status`, e.g. a pruned trial) with the error, calls
        `on_end(status)`, and re-raises. `active` is False on the processes of a distributed run that do not write."""
        try:
            yield self
        except BaseException as exc:
            if active:
                status = "interrupted" if isinstance(exc, KeyboardInterrupt) else getattr(exc, "run_status", "failed")
                error = "interrupted (Ctrl-C)" if isinstance(exc, KeyboardInterrupt) else f"{type(exc).__name__}: {exc}"
                if self.manifest_path.exists():
                    self.finish(status, error=error)
                else:
                    self.update_manifest(status=status, error=error)
                if on_end is not None:
                    on_end(status)
            raise

    @property
    def status(self) -> str:
        return self.manifest().get("status", "missing")

    # -- records
    def append_history(self, record: dict) -> None:
        """history.jsonl: rewritten atomically with the new line (small: one line per epoch)."""
        path = self.path / "history.jsonl"
        old = path.read_text(encoding="utf-8") if path.exists() else ""
        atomic_write_text(path, old + json.dumps(record, default=_json_default) + "\n")

    def history(self) -> list[dict]:
        path = self.path / "history.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

    def truncate_history(self, epochs: int) -> None:
        kept = [h for h in self.history() if h.get("epoch", 0) <= epochs]
        atomic_write_text(self.path / "history.jsonl", "".join(json.dumps(h) + "\n" for h in kept))


class RunLock:
    """An exclusive lock on a run directory for the life of a writing process (fcntl.flock on `.lock`, which the OS
    drops when the process dies, so a killed run can be resumed at once)."""

    def __init__(self, path: Path):
        self.path = Path(path) / ".lock"
        self.fd: int | None = None

    def acquire(self) -> RunLock:
        import fcntl

        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self.fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(self.fd)
            self.fd = None
            raise ValueError(f"{self.path.parent}: another process (PID {holder}) is writing this run; wait for it "
                             "to finish or stop it first") from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, str(os.getpid()).encode(), 0)
        return self

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing drops the flock
            self.fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


class Timer:
    def __init__(self) -> None:
        self.start = time.perf_counter()

    def __call__(self) -> float:
        return round(time.perf_counter() - self.start, 3)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def complete_runs(folder: Path) -> list[Path]:
    """The complete runs directly under `folder` (`<output_dir>/<name>`), oldest first (run ids sort by time)."""
    done = []
    for run in sorted(folder.iterdir()) if folder.is_dir() else []:
        try:
            status = json.loads((run / "manifest.json").read_text(encoding="utf-8")).get("status")
        except (OSError, ValueError):
            continue
        if status == "complete":
            done.append(run)
    return done


def list_runs(output_dir: str | Path = "runs") -> list[dict]:
    out = []
    for manifest in sorted(Path(output_dir).glob("*/*/manifest.json")):
        m = read_json(manifest)
        metrics_path = manifest.parent / "metrics.json"
        metrics = read_json(metrics_path).get("test", {}) if metrics_path.exists() else {}
        out.append({"run": str(manifest.parent), "name": m.get("name"), "status": m.get("status"),
                    "created": m.get("created"), "metrics": metrics})
    return out
