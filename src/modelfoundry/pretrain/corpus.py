"""Raw-text corpora as a stream of documents: a .txt file (a document per line, per paragraph, or the whole file), a
folder of text files (binary and undecodable files skipped and counted, or refused), JSONL (the crawler's output: one
document per line, field `text`), or a text column of a table. Documents stream from disk, so a corpus need not fit
in memory; each is assigned to train, val or test once, by a seeded draw, so a document never lands in two splits."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data.sources import DataError, json_objects, read_source

TABLE_SUFFIXES = {".csv", ".tsv", ".tab", ".parquet", ".pq"}
JSONL_SUFFIXES = {".jsonl", ".ndjson"}
BINARY_PROBE = 8192


@dataclass
class CorpusStats:
    """What reading the corpus found: files read and skipped (with why), and documents per split."""

    files: int = 0
    skipped: list[dict] = field(default_factory=list)
    documents: dict[str, int] = field(default_factory=dict)
    bytes: dict[str, int] = field(default_factory=dict)


def _split_text(text: str, documents: str) -> Iterator[str]:
    if documents == "file":
        if text.strip():
            yield text
        return
    if documents == "line":
        for line in text.splitlines():
            if line.strip():
                yield line
        return
    block: list[str] = []
    for line in text.splitlines():
        if line.strip():
            block.append(line)
        elif block:
            yield "\n".join(block)
            block = []
    if block:
        yield "\n".join(block)


def _read_text_file(path: Path, undecodable: str, stats: CorpusStats | None) -> str | None:
    raw = path.read_bytes()
    reason = None
    if b"\x00" in raw[:BINARY_PROBE]:
        reason = "binary (NUL bytes)"
    else:
        try:
            text = raw[3:].decode("utf-8") if raw.startswith(b"\xef\xbb\xbf") else raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            reason = f"not UTF-8 (bad byte at offset {exc.start})"
    if reason is None:
        return text
    if undecodable == "error":
        raise DataError(f"{path}: {reason}; a corpus folder must hold UTF-8 text files (or set "
                        "data.corpus.undecodable: skip to skip such files and count them)")
    if stats is not None:
        stats.skipped.append({"file": str(path), "reason": reason})
    return None


def _jsonl_documents(path: Path, key: str) -> Iterator[str]:
    with open(path, encoding="utf-8-sig") as fh:
        for i, obj in json_objects(fh, path):
            if key not in obj:
                raise DataError(f"{path}: line {i} has no field {key!r} (data.corpus.field); its fields: "
                                f"{', '.join(map(str, obj)) or 'none'}")
            value = obj[key]
            if value is not None and not isinstance(value, str):  # a number, NaN, a list: not text, not dropped unsaid
                raise DataError(f"{path}: line {i}: field {key!r} (data.corpus.field) holds {type(value).__name__} "
                                f"{str(value)[:40]!r}, expected text (a JSON string; null for no text)")
            if value and value.strip():
                yield value


def corpus_files(path: Path) -> list[Path]:
    """The files a corpus path stands for, in a fixed order (a folder: every file below it, sorted)."""
    if not path.exists():
        raise DataError(f"data.path: {path} does not exist")
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        if not files:
            raise DataError(f"{path}: the corpus folder holds no files")
        return files
    return [path]


def documents(path: Path, corpus, fmt: str = "auto", stats: CorpusStats | None = None) -> Iterator[str]:
    """Every document of the corpus at `path`, in order (`corpus`: the config's data.corpus section)."""
    files = corpus_files(path)
    for f in files:
        suffix = f.suffix.lower()
        if fmt == "jsonl" or (fmt == "auto" and suffix in JSONL_SUFFIXES):
            if stats is not None:
                stats.files += 1
            yield from _jsonl_documents(f, corpus.field)
        elif fmt in ("csv", "tsv", "parquet") or (fmt == "auto" and suffix in TABLE_SUFFIXES and not path.is_dir()):
            frame = read_source(f, fmt)
            if corpus.field not in frame.columns:
                raise DataError(f"{f}: no column {corpus.field!r} (data.corpus.field); its columns: "
                                f"{', '.join(map(str, frame.columns[:30]))}")
            if stats is not None:
                stats.files += 1
            for value in frame[corpus.field].dropna().astype(str):
                if value.strip():
                    yield value
        else:
            text = _read_text_file(f, corpus.undecodable, stats)
            if text is None:
                continue
            if stats is not None:
                stats.files += 1
            yield from _split_text(text, corpus.documents)


def assign_splits(docs: Iterator[str], val: float, test: float, seed: int) -> Iterator[tuple[str, str]]:
    """(split, document) for each document: one seeded uniform draw per document, in corpus order, so the same
    corpus and seed give the same split, and a document is in exactly one split."""
    rng = np.random.default_rng([seed, 2024])
    for doc in docs:
        u = rng.random()
        yield ("test" if u < test else "val" if u < test + val else "train"), doc
