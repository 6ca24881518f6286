"""From a ``benchmark`` config to the problems the stages use: the training source and the eval sets.

A benchmark config (``conf/benchmark/*.yaml``) has a ``loader`` partial (``split, n -> list[Problem]``),
an ``answer_type`` (and optionally a numeric ``tolerance: {rel, abs}``), an optional ``train`` source
(``split``, ``n``, ``rl_problems``, ``held_out``) for the teacher and RL, and ``splits``: the evaluated
splits, each tagged ``id`` or ``ood``. A suite config (``benchmark=paper``) instead holds several benchmark
configs under ``suite``; its eval sets are theirs, in order.

Which questions each training stage sees (:func:`train_problems`, :func:`rl_problems`):

- ``rl_problems: fresh`` (a generator such as the synthetic world, whose loader takes a ``stream``): the
  teacher's questions are the split's own stream; RL trains on new questions of the same split from the
  ``rl`` stream and validates on ``held_out`` more from the ``validation`` stream, all three disjoint by
  question. RL then measures and trains what SFT did not see.
- ``rl_problems: shared`` (a fixed dataset): ``held_out`` problems of the train split (a fixed draw) are set
  aside; the teacher and RL share the rest, as usual, and RL validates on the held-out ones, which neither
  stage trained on.

The answer rules travel with the problems: every problem's ``meta`` gets the benchmark's ``answer_type``
(and ``rel_tol``/``abs_tol``) unless its loader set its own (TabMWP, ASDiv and GSM-Plus have per-problem
types), which is what :func:`cmt.eval.evaluate.score` and :mod:`cmt.data.answers` read.
"""

from __future__ import annotations

import inspect
import random
from dataclasses import dataclass, replace

from hydra.utils import instantiate
from omegaconf import DictConfig

from cmt.data.benchmarks.source import take
from cmt.data.problem import Problem
from cmt.errors import ConfigError

RL_PROBLEM_SOURCES = ("fresh", "shared")
# Seed of the fixed draw of held-out problems (the same for every job, like an eval subset).
_HELD_OUT_SEED = "held_out"


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


@dataclass
class RLProblems:
    """RL's training problems and its validation problems, disjoint from each other and from what SFT saw."""

    train: list[Problem]
    validation: list[Problem]


def _train_source(benchmark_cfg: DictConfig) -> tuple[DictConfig, DictConfig]:
    """The ``train`` node and the loader config it reads with.

    Raises:
        ValueError: The benchmark has no training source.
    """
    train = benchmark_cfg.get("train")
    if not train:
        raise ValueError(f"benchmark={benchmark_cfg.name} has no training source (benchmark.train); "
                         "teach and fine-tune on one that has, e.g. benchmark=synthetic or benchmark=gsm8k")
    return train, (train.loader if "loader" in train else benchmark_cfg.loader)


def rl_problem_source(benchmark_cfg: DictConfig) -> str:
    """``benchmark.train.rl_problems``, checked: ``fresh`` needs a loader that draws named streams.

    Raises:
        ConfigError: An unknown value, or ``fresh`` with a loader that reads a fixed dataset.
    """
    train, loader_cfg = _train_source(benchmark_cfg)
    source = train.get("rl_problems", "shared")
    if source not in RL_PROBLEM_SOURCES:
        raise ConfigError(f"benchmark.train.rl_problems={source!r}: choose one of {', '.join(RL_PROBLEM_SOURCES)}")
    if source == "fresh" and "stream" not in inspect.signature(instantiate(loader_cfg)).parameters:
        raise ConfigError(f"benchmark.train.rl_problems=fresh: the loader {loader_cfg._target_} reads a fixed "
                          "dataset and cannot draw fresh problems (only a generator such as benchmark=synthetic "
                          "can); set benchmark.train.rl_problems=shared")
    return source


def _split_off_held_out(benchmark_cfg: DictConfig) -> tuple[list[Problem], list[Problem]]:
    """A fixed-dataset train split as (held out, the rest): ``benchmark.train.held_out`` problems (at most a
    fifth of the split), drawn with a fixed seed, set aside from teach and RL for RL's validation."""
    train, loader_cfg = _train_source(benchmark_cfg)
    problems = _with_answer_rules(instantiate(loader_cfg)(split=train.split, n=None), benchmark_cfg)
    count = min(int(train.get("held_out", 0)), len(problems) // 5)
    chosen = set(random.Random(_HELD_OUT_SEED).sample(range(len(problems)), count))
    return ([p for i, p in enumerate(problems) if i in chosen],
            [p for i, p in enumerate(problems) if i not in chosen])


def train_problems(benchmark_cfg: DictConfig, n: int | None) -> list[Problem]:
    """The questions the teacher writes traces for (the benchmark's ``train`` source); ``n`` of them (None: all).

    With ``rl_problems: shared`` the held-out problems (RL's validation) are left out first, and ``n`` are
    drawn from the rest with the loader's ``subset_seed``.

    Raises:
        ValueError: The benchmark has no training source.
        ConfigError: A bad ``benchmark.train.rl_problems``.
    """
    train, loader_cfg = _train_source(benchmark_cfg)
    if rl_problem_source(benchmark_cfg) == "fresh":
        return _with_answer_rules(instantiate(loader_cfg)(split=train.split, n=n), benchmark_cfg)
    _, rest = _split_off_held_out(benchmark_cfg)
    return take(rest, n, int(loader_cfg.get("subset_seed", 0)))


def rl_problems(benchmark_cfg: DictConfig, teach_n: int | None, n_train: int, n_val: int) -> RLProblems:
    """The problems RL trains and validates on; neither set holds a question the teacher (SFT) saw.

    Args:
        benchmark_cfg: The ``benchmark`` node.
        teach_n: ``teach.n``, the size of the teacher's set (what SFT trained on).
        n_train: Fresh problems to draw (``fresh``: one per RL prompt); ``shared`` trains on the teacher's set.
        n_val: Validation problems (``rl.val_n``), taken from the ``benchmark.train.held_out`` ones.

    Raises:
        ConfigError: ``n_val`` above ``benchmark.train.held_out``, or a bad ``rl_problems``.
    """
    train, loader_cfg = _train_source(benchmark_cfg)
    held_out = int(train.get("held_out", 0))
    if n_val > held_out:
        raise ConfigError(f"rl.val_n={n_val}: must be at most benchmark.train.held_out={held_out}, the problems "
                          "set aside from teach and RL for validation; lower rl.val_n or raise held_out")
    if rl_problem_source(benchmark_cfg) == "shared":
        validation, _ = _split_off_held_out(benchmark_cfg)
        return RLProblems(train_problems(benchmark_cfg, teach_n), validation[:n_val])
    loader = instantiate(loader_cfg)
    seen = {p.question for p in train_problems(benchmark_cfg, teach_n)}
    # Enough draws that every teacher question a stream repeats can be dropped.
    fresh = [p for p in loader(split=train.split, n=n_train + len(seen), stream="rl") if p.question not in seen]
    chosen = fresh[:n_train]
    seen |= {p.question for p in chosen}
    validation = [p for p in loader(split=train.split, n=n_val + len(seen), stream="validation")
                  if p.question not in seen]
    return RLProblems(_with_answer_rules(chosen, benchmark_cfg), _with_answer_rules(validation[:n_val], benchmark_cfg))


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
