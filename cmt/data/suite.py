"""From a ``benchmark`` config to the problems the stages use: the training source and the eval sets.

A benchmark config (``conf/benchmark/*.yaml``) has a ``loader`` partial (``split, n -> list[Problem]``),
an ``answer_type`` (and optionally a numeric ``tolerance: {rel, abs}``), an optional ``train`` source
(``split``, ``n``) for the teacher, and ``splits``: the evaluated splits, each tagged ``id`` or ``ood``. A
suite config (``benchmark=paper``) instead holds several benchmark configs under ``suite``; its eval sets
are theirs, in order.

The answer rules travel with the problems: every problem's ``meta`` gets the benchmark's ``answer_type``
(and ``rel_tol``/``abs_tol``) unless its loader set its own (TabMWP, ASDiv and GSM-Plus have per-problem
types), which is what :func:`cmt.eval.evaluate.score` and :mod:`cmt.data.answers` read.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from hydra.utils import instantiate
from omegaconf import DictConfig

from cmt.data.problem import Problem


@dataclass
class EvalSet:
    """The problems of one evaluated (benchmark, split), with its in/out-of-distribution tag."""

    benchmark: str
    split: str
    tag: str
    answer_type: str
    problems: list[Problem]


def _with_answer_rules(problems: list[Problem], benchmark_cfg: DictConfig) -> list[Problem]:
    """``problems`` with the benchmark's answer type and tolerance in their meta, unless they carry their own."""
    rules = {"answer_type": benchmark_cfg.get("answer_type", "number")}
    tolerance = benchmark_cfg.get("tolerance")
    if tolerance:
        rules |= {"rel_tol": float(tolerance.rel), "abs_tol": float(tolerance.abs)}
    return [replace(p, meta={**rules, **p.meta}) for p in problems]


def _members(benchmark_cfg: DictConfig) -> list[DictConfig]:
    suite = benchmark_cfg.get("suite")
    return list(suite.values()) if suite else [benchmark_cfg]


def train_problems(benchmark_cfg: DictConfig, n: int | None) -> list[Problem]:
    """The questions the teacher writes traces for (the benchmark's ``train`` source).

    Raises:
        ValueError: The benchmark has no training source.
    """
    train = benchmark_cfg.get("train")
    if not train:
        raise ValueError(f"benchmark={benchmark_cfg.name} has no training source (benchmark.train); "
                         "teach and fine-tune on one that has, e.g. benchmark=synthetic or benchmark=gsm8k")
    loader = instantiate(train.loader if "loader" in train else benchmark_cfg.loader)
    return _with_answer_rules(loader(split=train.split, n=n), benchmark_cfg)


def eval_sets(benchmark_cfg: DictConfig, n: int | None) -> list[EvalSet]:
    """Every evaluated split of the benchmark (or of each suite member), ``n`` problems each (None: all)."""
    sets = []
    for member in _members(benchmark_cfg):
        loader = instantiate(member.loader)
        limit = n if n is not None else member.get("eval_n")
        # Local copies may lack a split the hub has: the member names the local subset that stands in for it,
        # and the rows carry that subset's split name.
        local = bool(member.loader.get("data_dir")) and not member.get("path")
        substitutes = dict(member.get("local_substitutes") or {}) if local else {}
        for entry in member.splits:
            split = substitutes.get(entry.split, entry.split)
            problems = _with_answer_rules(loader(split=split, n=limit), member)
            sets.append(EvalSet(member.name, split, entry.tag, member.get("answer_type", "number"), problems))
    return sets
