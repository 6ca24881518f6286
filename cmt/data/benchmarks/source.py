"""Where a benchmark's records come from: one local file, a local data folder, or the Hugging Face hub.

Every loader in this package reads its raw records through :func:`load_problems`, which picks the source
in this order:

1. ``path``: one local file (``benchmark.path=...``); ``{split}`` in it is replaced by the split name,
   so ``benchmark.path=data/gsm8k/{split}.jsonl`` serves both the train and the test split.
2. ``data_dir``: a folder laid out like ``../shared/data/benchmarks`` (``paths.data_dir=...`` or the
   ``CMT_DATA_DIR`` environment variable); ``files`` maps each split to a file inside it.
3. ``hub``: ``datasets.load_dataset(id, config, split=...)``, the default. When the hub cannot be reached
   the error is one line naming the two local overrides.

Files are read by their format: JSON Lines, JSON (an array, an object keyed by problem id, or JSON Lines under
a ``.json`` name as AQuA ships them) and ASDiv's XML. A malformed file raises
:class:`BenchmarkSourceError` naming the file and line.
"""

from __future__ import annotations

import json
import random
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cmt.data.problem import Problem
from cmt.errors import CmtError

LOCAL_OVERRIDES = ("use local files instead: benchmark.path=FILE (in a suite: benchmark.suite.NAME.path=FILE) "
                   "or paths.data_dir=DIR laid out like ../shared/data/benchmarks")


class BenchmarkSourceError(CmtError, RuntimeError):
    """A benchmark's records cannot be read; the message says where and what to do instead."""


@dataclass(frozen=True)
class Record:
    """One raw benchmark record and where it was read (for error messages and provenance).

    Attributes:
        data: The record's fields as read (for keyed JSON files, the key is added as ``_key``).
        where: ``"file:line"`` for local files, ``"hub-id[split] row i"`` for hub records.
    """

    data: Mapping[str, Any]
    where: str

    def get(self, role: str, candidates: Sequence[str], fields: Mapping[str, str] | None = None,
            required: bool = True) -> Any:
        """The value of the first present field among ``candidates`` (or ``fields[role]`` when mapped).

        Args:
            role: What the value is for (``question``, ``answer``...): the key of ``fields``.
            candidates: Field names tried in order when ``fields`` does not map ``role``.
            fields: The config's field mapping (``benchmark.loader.fields``), or None.
            required: Raise when no candidate is present (else return None).

        Raises:
            BenchmarkSourceError: A required field is missing.
        """
        names = [fields[role]] if fields and role in fields else list(candidates)
        for name in names:
            if name in self.data and self.data[name] is not None:
                return self.data[name]
        if required:
            raise BenchmarkSourceError(
                f"{self.where}: no field {' or '.join(map(repr, names))} for the {role} "
                f"(fields: {', '.join(sorted(self.data))}); map it with benchmark.loader.fields.{role}=NAME")
        return None


def _json_lines(path: Path, text: str) -> list[Record]:
    records = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BenchmarkSourceError(f"{path}:{number}: not valid JSON ({exc.msg}, column {exc.colno})") from exc
        if not isinstance(data, dict):
            raise BenchmarkSourceError(f"{path}:{number}: expected a JSON object, got {type(data).__name__}")
        records.append(Record(data, f"{path}:{number}"))
    return records


def _json(path: Path, text: str) -> list[Record]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":
            return _json_lines(path, text)
        raise BenchmarkSourceError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg}, column {exc.colno})") from exc
    if isinstance(data, list):
        if not all(isinstance(item, dict) for item in data):
            raise BenchmarkSourceError(f"{path}: expected an array of JSON objects")
        return [Record(item, f"{path}[{i}]") for i, item in enumerate(data)]
    if isinstance(data, dict) and data and all(isinstance(v, dict) for v in data.values()):
        return [Record({**item, "_key": key}, f"{path}[{key!r}]") for key, item in data.items()]
    if isinstance(data, dict):
        return _json_lines(path, text)
    raise BenchmarkSourceError(f"{path}: expected a JSON array of records or an object keyed by problem id")


def _xml(path: Path, text: str) -> list[Record]:
    """``<Problem ID=.. Grade=..><Body>..</Body>...</Problem>`` elements as flat records (ASDiv's format)."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        line, column = exc.position
        raise BenchmarkSourceError(f"{path}:{line}: not valid XML ({exc.msg.split(':')[0]}, column {column})") from exc
    records = []
    for element in root.iter("Problem"):
        data = dict(element.attrib)
        data.update({child.tag: (child.text or "").strip() for child in element})
        records.append(Record(data, f"{path} Problem {data.get('ID', len(records))}"))
    if not records:
        raise BenchmarkSourceError(f"{path}: no <Problem> elements")
    return records


def read_file(path: str | Path) -> list[Record]:
    """All records of one local file (``.jsonl``, ``.json`` or ``.xml``), in file order.

    Raises:
        BenchmarkSourceError: The file is missing, of an unknown format, or malformed (file and line named).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise BenchmarkSourceError(f"benchmark file not found: {path}")
    readers = {".jsonl": _json_lines, ".json": _json, ".xml": _xml}
    reader = readers.get(path.suffix.lower())
    if reader is None:
        raise BenchmarkSourceError(f"{path}: unknown benchmark file format (expected {', '.join(readers)})")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[:exc.start].count(b"\n") + 1
        raise BenchmarkSourceError(f"{path}:{line}: not UTF-8 text") from exc
    return reader(path, text)


def hub_records(dataset_id: str, config: str | None, split: str, benchmark: str) -> list[Record]:
    """All rows of one split of a hub dataset.

    Raises:
        BenchmarkSourceError: The hub cannot be reached or has no such dataset/split (one line, naming the
            local overrides).
    """
    try:
        from datasets import load_dataset

        rows = load_dataset(dataset_id, config, split=split)
    except Exception as exc:  # any failure of the hub is reported the same way (re-raised below)
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        where = f"{dataset_id}" + (f" ({config})" if config else "") + f" split {split!r}"
        raise BenchmarkSourceError(f"{benchmark}: cannot load {where} from the Hugging Face hub: {reason}; "
                                   f"{LOCAL_OVERRIDES}") from exc
    return [Record(dict(row), f"{dataset_id}[{split}] row {i}") for i, row in enumerate(rows)]


def records(benchmark: str, split: str, *, path: str | None = None, data_dir: str | None = None,
            files: Mapping[str, str] | None = None, hub: Mapping[str, Any] | None = None) -> list[Record]:
    """The raw records of ``split`` from the first configured source: ``path``, ``data_dir``, else the hub.

    Args:
        benchmark: The benchmark's name (for messages).
        split: The split to read.
        path: One local file; ``{split}`` in it is replaced by ``split``.
        data_dir: A folder laid out like ``../shared/data/benchmarks``.
        files: Split -> file path relative to ``data_dir``.
        hub: ``{id, config, splits, configs}``: the hub dataset, its config, split -> hub split expression
            (``train+test`` concatenates; a split missing from ``splits`` has no hub source) and, optionally,
            split -> config for datasets with one config per split (GSM-Symbolic).

    Raises:
        BenchmarkSourceError: No source serves the split, or the chosen one fails.
    """
    if path:
        return read_file(str(path).replace("{split}", split))
    if data_dir:
        root, files = Path(data_dir).expanduser(), dict(files or {})
        present = [name for name, file in files.items() if (root / file).is_file()]
        if split not in present:
            reason = f"{root / files[split]} not found" if split in files else f"no local file for split {split!r}"
            raise BenchmarkSourceError(f"{benchmark}: {reason} under paths.data_dir "
                                       f"(splits with local files: {', '.join(present) or 'none'}); evaluate one "
                                       "of those (a benchmark names its local stand-ins in local_substitutes)")
        return read_file(root / files[split])
    hub_splits = dict((hub or {}).get("splits") or {})
    if not hub or not hub.get("id") or split not in hub_splits:
        raise BenchmarkSourceError(f"{benchmark}: split {split!r} has no hub source "
                                   f"(hub splits: {', '.join(hub_splits) or 'none'}); {LOCAL_OVERRIDES}")
    config = dict(hub.get("configs") or {}).get(split, hub.get("config"))
    return hub_records(hub["id"], config, hub_splits[split], benchmark)


def take(items: Sequence[Any], n: int | None, seed: int = 0) -> list[Any]:
    """``n`` items drawn without replacement with ``seed``, kept in their original order (all when n is None).

    A seeded draw rather than the first ``n``: several benchmark files are grouped (GSM-Symbolic by
    template, MAWPS by subset), so a prefix would not be representative.
    """
    if n is None or n >= len(items):
        return list(items)
    if n < 0:
        raise ValueError(f"n must be >= 0 or None, got {n}")
    chosen = sorted(random.Random(seed).sample(range(len(items)), n))
    return [items[i] for i in chosen]


def load_problems(benchmark: str, split: str, n: int | None, parse: Callable[[Record, int], Problem | None],
                  *, path: str | None = None, data_dir: str | None = None, files: Mapping[str, str] | None = None,
                  hub: Mapping[str, Any] | None = None, subset_seed: int = 0) -> list[Problem]:
    """Read ``split`` (see :func:`records`), turn each record into a :class:`Problem`, keep ``n`` of them.

    Args:
        benchmark, split, path, data_dir, files, hub: As :func:`records`.
        n: How many problems (None: all), drawn with :func:`take`.
        parse: ``(record, index) -> Problem``, or None to leave a record out (a subset filter).
        subset_seed: Seed of the draw; fixed by default so every run evaluates the same problems.

    Raises:
        BenchmarkSourceError: The source cannot be read, or a record lacks a required field.
    """
    rows = records(benchmark, split, path=path, data_dir=data_dir, files=files, hub=hub)
    problems = [p for p in (parse(record, i) for i, record in enumerate(rows)) if p is not None]
    return take(problems, n, subset_seed)
