"""GSM-Symbolic (Mirzadeh et al., 2024): GSM8K test problems re-instantiated from symbolic templates.

Two kinds of split:

- ``main``, ``p1``, ``p2``: the released instance files (``{id, instance, question, answer}``, ``answer``
  a GSM8K-style solution ending ``#### n``): 5000, 5000 and 2500 problems (50 per template; P1 and P2 add
  one and two clauses). The hub has all three; locally only ``p2`` (``GSM_p2.jsonl``) is available.
- ``sampled_main``, ``sampled_p1``, ``sampled_p2``: instances drawn here from the released templates
  (``templates/{symbolic,p1,p2}``) with a seed, for the symbolic-perturbation ablation and for local runs
  without the main release (:mod:`cmt.data.benchmarks.gsm_symbolic_templates`). Their names and word lists
  are ours, not the release's; ``docs/benchmarks.md`` says which templates are skipped and why.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cmt.data.benchmarks.gold import after_marker, intermediate_values, strip_annotations
from cmt.data.benchmarks.gsm_symbolic_templates import VARIANT_DIRS, load_templates, sample_problems
from cmt.data.benchmarks.source import BenchmarkSourceError, Record, load_problems
from cmt.data.problem import Problem

RELEASED = tuple(VARIANT_DIRS)
SAMPLED = tuple(f"sampled_{v}" for v in VARIANT_DIRS)


def parse(record: Record, index: int, split: str = "main", fields: Mapping[str, str] | None = None) -> Problem:
    """One released instance as a :class:`Problem` (id ``<split>-<template>-<instance>``).

    Raises:
        BenchmarkSourceError: The record lacks a field or its solution has no ``####`` answer.
    """
    solution = str(record.get("answer", ["answer"], fields))
    template, instance = record.data.get("id", index), record.data.get("instance", 0)
    meta = {"solution": strip_annotations(solution), "intermediate": intermediate_values(solution),
            "template": template, "instance": instance, "source": record.where}
    if record.data.get("original_id") is not None:
        meta["original_id"] = record.data["original_id"]
    question = str(record.get("question", ["question"], fields)).strip()
    return Problem(id=f"{split}-{template}-{instance}", question=question, gold=after_marker(solution, record),
                   meta=meta)


def _templates_folder(variant: str, templates_dir: str | None, data_dir: str | None) -> Path:
    if templates_dir:
        return Path(templates_dir).expanduser() / VARIANT_DIRS[variant]
    if data_dir:
        return Path(data_dir).expanduser() / "gsm_symbolic" / "templates" / VARIANT_DIRS[variant]
    raise BenchmarkSourceError("gsm_symbolic: sampled splits need the released templates, which are not on the hub: "
                               "set paths.data_dir=DIR (with gsm_symbolic/templates/) or "
                               "benchmark.loader.templates_dir=DIR (with symbolic/, p1/, p2/)")


def load(split: str, n: int | None = None, *, templates_dir: str | None = None, instances_per_template: int = 50,
         template_seed: int = 0, max_attempts: int = 3000, fields: Mapping[str, str] | None = None,
         **source: Any) -> list[Problem]:
    """GSM-Symbolic problems of ``split``.

    Args:
        split: ``main``, ``p1``, ``p2`` (released) or ``sampled_main``, ``sampled_p1``, ``sampled_p2``.
        n: How many (None: all). Released splits: a seeded draw; sampled splits: the first ``n`` of the
            round-robin over templates (:func:`~cmt.data.benchmarks.gsm_symbolic_templates.sample_problems`).
        templates_dir: Folder with ``symbolic/``, ``p1/``, ``p2/`` (default: ``<data_dir>/gsm_symbolic/templates``).
        instances_per_template, template_seed, max_attempts: Sampling of the ``sampled_*`` splits.
        fields, **source: As :func:`cmt.data.benchmarks.gsm8k.load` (released splits).

    Raises:
        BenchmarkSourceError: Unknown split, or its source cannot be read.
    """
    if split in SAMPLED:
        variant = split.removeprefix("sampled_")
        templates = load_templates(_templates_folder(variant, templates_dir, source.get("data_dir")))
        problems, _ = sample_problems(templates, variant, n, instances_per_template, template_seed, max_attempts)
        return problems
    if split not in RELEASED:
        raise BenchmarkSourceError(f"gsm_symbolic: unknown split {split!r}; choose one of "
                                   f"{', '.join(RELEASED + SAMPLED)}")
    try:
        return load_problems("gsm_symbolic", split, n, lambda r, i: parse(r, i, split, fields), **source)
    except BenchmarkSourceError as exc:
        if "not found under paths.data_dir" in str(exc) and not source.get("path"):
            raise BenchmarkSourceError(f"{exc}; the released {split!r} instances are not in this data folder, "
                                       f"sample them from the templates instead with split sampled_{split}") from exc
        raise
