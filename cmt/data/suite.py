"""From a ``benchmark`` config to the problems the stages use: the training source and the eval sets.

A benchmark config (``conf/benchmark/*.yaml``) has a ``loader`` partial (``split, n -> list[Problem]``),
an ``answer_type``, an optional ``train`` source (``split``, ``n``) for the teacher, and ``splits``: the
evaluated splits, each tagged ``id`` or ``ood``. A suite config (``benchmark=paper``) instead holds several
benchmark configs under ``suite``; its eval sets are theirs, in order.
"""

from __future__ import annotations

from dataclasses import dataclass

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
    loader = instantiate(train.get("loader", benchmark_cfg.loader))
    return loader(split=train.split, n=n)


def eval_sets(benchmark_cfg: DictConfig, n: int | None) -> list[EvalSet]:
    """Every evaluated split of the benchmark (or of each suite member), ``n`` problems each (None: all)."""
    sets = []
    for member in _members(benchmark_cfg):
        loader = instantiate(member.loader)
        limit = n if n is not None else member.get("eval_n")
        for entry in member.splits:
            sets.append(EvalSet(member.name, entry.split, entry.tag, member.get("answer_type", "number"),
                                loader(split=entry.split, n=limit)))
    return sets
