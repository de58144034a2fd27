"""Read a data source into a pandas DataFrame: CSV/TSV, Parquet, JSONL, UEA/UCR .ts, folders of text, image or audio files,
and in-memory DataFrames / numpy arrays (Python API)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}
AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif"}
TEXT_SUFFIXES = {".txt", ".md", ""}


class DataError(ValueError):
    """Bad input data: the message names the file, row or column, what was expected and what was found."""


@dataclass(frozen=True)
class ReadOptions:
    """What a reader may need from the config's data section."""

    target: str = "label"
    columns: list[str] | None = None
    delimiter: str | None = None
    encoding: str | None = None


@dataclass(frozen=True)
class Source:
    name: str
    suffixes: tuple[str, ...]
    """File suffixes that pick this reader under `format: auto` (none for folder readers, picked by content)."""
    read: Callable[[Path, ReadOptions], pd.DataFrame]


SOURCES: dict[str, Source] = {}


def register_source(name: str, suffixes: tuple[str, ...], read: Callable[[Path, ReadOptions], pd.DataFrame]) -> None:
    """A data source: `data.format: <name>`, and `auto` for files with these suffixes. Names and suffixes are unique."""
    taken = {s for src in SOURCES.values() for s in src.suffixes} & set(suffixes)
    if name in SOURCES or taken:
        raise ValueError(f"data source {name!r}: name or suffixes {sorted(taken)} already registered")
    SOURCES[name] = Source(name, suffixes, read)


def detect_format(path: Path) -> str:
    if path.is_dir():
        files = [p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")]
        if not files:
            raise DataError(f"{path}: folder holds no files; expected class sub-folders (cat/1.png, dog/2.png, ...)")
        images = sum(p.suffix.lower() in IMAGE_SUFFIXES for p in files)
        sounds = sum(p.suffix.lower() in AUDIO_SUFFIXES for p in files)
        return ("image_folder" if images >= len(files) / 2 else "audio_folder" if sounds >= len(files) / 2
                else "text_folder")
    suffix = "".join(path.suffixes[-2:]).lower() if path.suffix.lower() == ".gz" else path.suffix.lower()
    return next((s.name for s in SOURCES.values() if suffix in s.suffixes), "csv")


def read_source(path: str | Path, fmt: str = "auto", *, target: str = "label", columns: list[str] | None = None,
                delimiter: str | None = None, encoding: str | None = None) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    fmt = detect_format(path) if fmt == "auto" else fmt
    if fmt not in SOURCES:
        raise DataError(f"{path}: unknown format {fmt!r}; registered: {', '.join(SOURCES)}")
    return SOURCES[fmt].read(path, ReadOptions(target, columns, delimiter, encoding))


def decode(path: Path, encoding: str | None) -> str:
    raw = path.read_bytes()
    if not raw.strip():
        raise DataError(f"{path}: the file is empty")
    if encoding:
        try:
            return raw.decode(encoding)
        except (UnicodeDecodeError, LookupError) as exc:
            raise DataError(f"{path}: cannot decode as {encoding!r}: {exc}") from None
    if raw.startswith(b"\xef\xbb\xbf"):
        return raw[3:].decode("utf-8")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        from charset_normalizer import from_bytes

        lines = raw.split(b"\n")
        bad, utf8 = [], 0
        for i, ln in enumerate(lines, 1):
            try:
                ln.decode("utf-8")
                utf8 += not ln.isascii()
            except UnicodeDecodeError:
                bad.append(i)
        guess = from_bytes(b"\n".join(lines[i - 1] for i in bad[:2000])).best()
        name = guess.encoding if guess else "unknown"
        if utf8:  # some lines are real UTF-8 with non-ASCII text, others are not: no single encoding reads it
            shown = ", ".join(map(str, bad[:10])) + (f" and {len(bad) - 10} more" if len(bad) > 10 else "")
            raise DataError(
                f"{path}: mixed encodings: {utf8} line(s) are UTF-8 with non-ASCII text, but line(s) {shown} are not "
                f"(they look like {name!r}). One encoding cannot read both without garbling one of them; re-save "
                f"the file in one encoding (e.g. UTF-8) first") from None
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(
            f"{path}: not UTF-8 (bad byte at line {line}); it looks like {name!r}. "
            f"Set `data.encoding: {'gb18030' if name in ('gb2312', 'gbk', 'gb18030', 'big5', 'hz') else name}` "
            "in the config if that is right") from None


CANDIDATE_DELIMITERS = (",", "\t", ";", "|")
"""Tried in this order; the first is a `.csv` file's own. Whitespace (" ") is the last resort, for space-aligned
tables such as NASA's C-MAPSS files."""


def _field_counts(sample: str, delimiter: str) -> list[int]:
    """Fields per record of a sample, quoting respected (a quoted comma or line break stays inside its field)."""
    if delimiter == " ":
        return [len(line.split()) for line in csv_lines(sample) if line.strip()]
    return [len(r) for r in csv.reader(io.StringIO(sample), delimiter=delimiter, quotechar='"') if r]


def sniff_delimiter(text: str, preferred: str = ",") -> str:
    """The delimiter the header line and quoting support. A candidate must split the header into 2+ fields and
    give every sampled record (the last one may be cut) that many fields, quotes respected. The preferred one
    (a .csv file's comma) wins when it does; another only on that evidence; a file no candidate splits
    consistently is one column. csv.Sniffer guessed ' ' on quote-rich prose, and nothing checked its guess."""
    lines = csv_lines(text)
    sample = "".join(lines[:500])
    if len(lines) > 500:  # the last sampled record may be cut inside a quoted field: leave it out
        sample = sample.rstrip("\r\n").rsplit("\n", 1)[0]
    best, best_score = None, (0.0, 0)
    for d in (preferred, *[c for c in CANDIDATE_DELIMITERS if c != preferred], " "):
        counts = _field_counts(sample, d)
        if not counts or counts[0] < 2:
            continue
        body = counts[1:-1] if len(counts) > 2 else counts[1:]
        consistent = sum(c == counts[0] for c in body) / max(1, len(body))
        if d == preferred and consistent == 1.0:
            return d
        if d == " " and best is not None:
            break  # whitespace only where no real delimiter splits the header
        if consistent >= 0.9 and (consistent, counts[0]) > best_score:
            best, best_score = d, (consistent, counts[0])
    return best or preferred


def read_delimited(path: Path, delimiter: str | None, encoding: str | None, columns: list[str] | None) -> pd.DataFrame:
    text = decode(path, encoding)
    declared = delimiter is not None
    if delimiter is None:
        delimiter = sniff_delimiter(text, "\t" if path.suffix.lower() in (".tsv", ".tab") else ",")
    if delimiter == " ":
        sep, engine = r"\s+", "python"
    else:
        sep, engine = delimiter, "c"
        _check_field_counts(path, text, delimiter, columns, declared)
    try:
        df = pd.read_csv(io.StringIO(text), sep=sep, header=None if columns else "infer", names=columns,
                         engine=engine, skipinitialspace=True, index_col=False)
    except pd.errors.ParserError as exc:
        raise DataError(f"{path}: cannot parse as delimited text (delimiter {delimiter!r}): {exc}") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty") from None
    if columns and len(df.columns) != len(columns):
        raise DataError(f"{path}: data.columns names {len(columns)} columns but the file has {len(df.columns)}")
    if df.empty:
        raise DataError(f"{path}: has a header ({', '.join(map(str, df.columns[:8]))}) but no data rows")
    df.columns = [str(c).strip() for c in df.columns]
    return df


def _check_field_counts(path: Path, text: str, delimiter: str, columns: list[str] | None, declared: bool) -> None:
    """A record with more fields than the header is refused, naming its line: pandas otherwise takes a first row's
    extra leading fields as an index (shifting every value) or stops with a bare 'Expected N fields'. Fewer fields
    than the header stay missing values, as every CSV reader reads them."""
    reader = csv.reader(io.StringIO(text), delimiter=delimiter, quotechar='"')
    width = len(columns) if columns else None
    while True:
        try:
            record = next(reader, None)
        except csv.Error as exc:
            raise DataError(f"{path}: line {reader.line_num}: cannot parse as delimited text (delimiter "
                            f"{delimiter!r}): {exc}") from None
        if record is None:
            return
        if not record:
            continue
        if width is None:
            width = len(record)
        elif len(record) > width:
            where = "data.columns names" if columns else "the header has"
            hint = (f"; the file may not be {delimiter!r}-separated: set data.delimiter" if declared else
                    "; quote a field that holds the delimiter (\"why, oh why\"), or set data.delimiter")
            raise DataError(f"{path}: line {reader.line_num} has {len(record)} fields but {where} {width} "
                            f"(delimiter {delimiter!r}): {_line(text, reader.line_num)[:80]!r}{hint}")


def csv_lines(text: str) -> list[str]:
    """The lines of delimited text as csv's reader counts them, endings kept: split at "\n" only (str.splitlines
    also splits at U+2028 and a lone "\r", which may sit inside a field)."""
    return io.StringIO(text).readlines()


def _line(text: str, number: int) -> str:
    """Line `number` (1-based) as csv's reader counts lines."""
    return csv_lines(text)[number - 1].rstrip("\r\n")


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        df = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for a non-Parquet file
        raise DataError(f"{path}: not a readable Parquet file ({type(exc).__name__}: {exc})") from None
    if df.empty:
        raise DataError(f"{path}: the Parquet file has no rows")
    return df


def json_objects(lines, path: Path):
    """(line number, object) for each non-blank line of a JSON-lines file, refusing a line that is not a JSON object
    (naming the file and line). `lines` may stream (an open file): the pretraining corpus reads it that way."""
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: line {i} is not valid JSON ({exc.msg}): {line[:80]!r}") from None
        if not isinstance(obj, dict):
            raise DataError(f"{path}: line {i}: expected a JSON object per line, got {type(obj).__name__}")
        yield i, obj


def _read_jsonl(path: Path, encoding: str | None) -> pd.DataFrame:
    rows = [obj for _, obj in json_objects(decode(path, encoding).splitlines(), path)]
    if not rows:
        raise DataError(f"{path}: no JSON lines")
    return pd.DataFrame(rows)


def _read_json(path: Path, encoding: str | None) -> pd.DataFrame:
    """A JSON array of objects (LLaMA-Factory's and Alpaca's .json files), or an object holding one under "data"."""
    try:
        obj = json.loads(decode(path, encoding))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}); JSON lines go in a .jsonl file") from None
    if isinstance(obj, dict) and isinstance(obj.get("data"), list):
        obj = obj["data"]
    if not isinstance(obj, list) or not obj:
        raise DataError(f"{path}: expected a non-empty JSON array of objects (one per row), got {type(obj).__name__}")
    bad = next((i for i, row in enumerate(obj) if not isinstance(row, dict)), None)
    if bad is not None:
        raise DataError(f"{path}: item {bad} of the array is a {type(obj[bad]).__name__}, not an object")
    return pd.DataFrame(obj)


def _read_folder(path: Path, target: str, kind: str) -> pd.DataFrame:
    classes = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"{path}: expected one sub-folder per class (e.g. {path}/cat/, {path}/dog/), found none")
    rows = []
    for cls in classes:
        for f in sorted(cls.rglob("*")):
            if not f.is_file() or f.name.startswith("."):
                continue
            if kind == "image" and f.suffix.lower() in IMAGE_SUFFIXES:
                rows.append({"image": str(f), target: cls.name})
            elif kind == "audio" and f.suffix.lower() in AUDIO_SUFFIXES:
                rows.append({"audio": str(f), target: cls.name})
            elif kind == "text" and f.suffix.lower() in TEXT_SUFFIXES:
                rows.append({"text": decode(f, None).strip(), target: cls.name})
    if not rows:
        raise DataError(f"{path}: no {kind} files in its class folders ({', '.join(c.name for c in classes[:5])})")
    return pd.DataFrame(rows)


def from_arrays(x: Any, y: Any = None, target: str = "label") -> pd.DataFrame:
    """A DataFrame from numpy arrays: 2-D x -> numeric columns f0..fn; 3-D/4-D x -> an in-memory image column."""
    x = np.asarray(x)
    if x.ndim == 2:
        df = pd.DataFrame(x, columns=[f"f{i}" for i in range(x.shape[1])])
    elif x.ndim in (3, 4):
        df = pd.DataFrame({"image": list(x.astype(np.float32))})
    else:
        raise DataError(f"arrays: expected x with 2 (table) or 3-4 (images) dimensions, got shape {x.shape}")
    if y is not None:
        y = np.asarray(y)
        if len(y) != len(df):
            raise DataError(f"arrays: x has {len(df)} rows but y has {len(y)}")
        df[target] = y
    return df


# the readers, one line each (a new one: a function (path, ReadOptions) -> DataFrame and a line here)
register_source("csv", (".csv", ".txt", ".data"), lambda p, o: read_delimited(p, o.delimiter, o.encoding, o.columns))
register_source("tsv", (".tsv", ".tab"), lambda p, o: read_delimited(p, o.delimiter or "\t", o.encoding, o.columns))
register_source("parquet", (".parquet", ".pq"), lambda p, o: _read_parquet(p))
register_source("jsonl", (".jsonl", ".ndjson"), lambda p, o: _read_jsonl(p, o.encoding))
register_source("json", (".json",), lambda p, o: _read_json(p, o.encoding))
register_source("text_folder", (), lambda p, o: _read_folder(p, o.target, "text"))
register_source("image_folder", (), lambda p, o: _read_folder(p, o.target, "image"))
from .tsformat import read_ts  # noqa: E402  (a reader in its own file: it imports DataError and decode from above)

register_source("ts", (".ts",), lambda p, o: read_ts(p, o.target))
register_source("audio_folder", (), lambda p, o: _read_folder(p, o.target, "audio"))
register_source("answer_lines", (), lambda p, o: _answer_lines(p))


def _answer_lines(path: Path) -> pd.DataFrame:
    from .tracing import read_answer_lines

    return read_answer_lines(path)
