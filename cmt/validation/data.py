"""Config checks of what a job reads in: the prompt, the benchmark, and the building of training sets (the
``teach`` node and its teacher). Part of `cmt.validation`; one function per node, each failing with one
``key=value: what is allowed`` line.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from string import Formatter

from omegaconf import DictConfig

from cmt import config_checks as checks
from cmt.config_checks import (
    boolean,
    choice,
    fail,
    get,
    has,
    integer,
    number,
    positive_int,
    sequence,
    string,
)
from cmt.data.suite import RL_PROBLEM_SOURCES
from cmt.models import DTYPES
from cmt.teachers import KINDS
from cmt.teachers.filters import SELECTIONS

INF = math.inf
TEACHER_DEVICES = ("auto", "cpu", "cuda")


def _template(cfg: DictConfig, path: str) -> str:
    """A ``str.format`` template whose only field is ``{question}``, which it must contain."""
    value = get(cfg, path)
    if not isinstance(value, str):
        raise fail(path, value, "must be a string with a {question} field")
    try:
        fields = {name for _, name, _, _ in Formatter().parse(value) if name is not None}
    except ValueError as error:
        raise fail(path, value, f"must be a valid str.format template ({error}); write literal braces as "
                               "{{ and }}") from None
    if "question" not in fields:
        raise fail(path, value, "must contain the {question} field")
    if extra := sorted(fields - {"question"}):
        raise fail(path, value, f"may only use the {{question}} field, not {{{extra[0]}}}; write literal "
                               "braces as {{ and }}")
    return value


def check_prompt(cfg: DictConfig) -> None:
    """The prompt every method sees, and the few-shot exemplars."""
    _template(cfg, "prompt.template")
    target_prefix = get(cfg, "prompt.target_prefix")
    if not isinstance(target_prefix, str):
        raise fail("prompt.target_prefix", target_prefix, "must be a string")
    boolean(cfg, "prompt.use_chat_template")
    exemplars = sequence(cfg, "prompt.exemplars", non_empty=False) if has(cfg, "prompt.exemplars") else []
    for index, exemplar in enumerate(exemplars):
        for field in ("question", "answer"):
            value = exemplar.get(field) if isinstance(exemplar, Mapping) else None
            if not isinstance(value, str) or not value:
                raise fail(f"prompt.exemplars.{index}.{field}", value, "must be a non-empty string")
    integer(cfg, "prompt.shots", 0, len(exemplars))


def check_benchmark(cfg: DictConfig) -> None:
    """Problems per split and the evaluated splits (of each member of a suite)."""
    string(cfg, "benchmark.name")
    integer(cfg, "benchmark.eval_n", optional=True)
    if has(cfg, "benchmark.train") and get(cfg, "benchmark.train") is not None:
        integer(cfg, "benchmark.train.n", optional=True)
        integer(cfg, "benchmark.train.held_out", 0)
        choice(cfg, "benchmark.train.rl_problems", RL_PROBLEM_SOURCES)
    suite = get(cfg, "benchmark.suite", default=None)
    members = [f"benchmark.suite.{name}" for name in suite] if suite else ["benchmark"]
    for member in members:
        if member != "benchmark":
            integer(cfg, f"{member}.eval_n", optional=True)
        for index, entry in enumerate(sequence(cfg, f"{member}.splits")):
            for field in ("split", "tag"):
                value = entry.get(field) if isinstance(entry, Mapping) else None
                if not isinstance(value, str) or not value:
                    raise fail(f"{member}.splits.{index}.{field}", value, "must be a non-empty string")


def check_teach(cfg: DictConfig) -> None:
    """Building the training sets: sizes, kinds, prompts, filters and the selection of samples."""
    integer(cfg, "teach.n", optional=True)
    kinds = sequence(cfg, "teach.kinds")
    if unknown := [k for k in kinds if k not in KINDS]:
        raise fail("teach.kinds", kinds, f"unknown kinds {unknown}; choose from {', '.join(KINDS)}")
    if len(set(kinds)) != len(kinds):
        raise fail("teach.kinds", kinds, "each kind at most once")
    string(cfg, "teach.prompts.system", optional=True)
    for kind in kinds:
        _template(cfg, f"teach.prompts.{kind}")
    n_samples = positive_int(cfg, "teach.n_samples")
    choice(cfg, "teach.select", SELECTIONS)
    positive_int(cfg, "teach.filters.max_words")
    allowed = sequence(cfg, "teach.filters.allowed_numbers", non_empty=False)
    if not all(checks.is_number(a) for a in allowed):
        raise fail("teach.filters.allowed_numbers", allowed, "must be a list of finite numbers")
    string(cfg, "teach.cache_dir")
    boolean(cfg, "teach.progress")
    # A trace teacher (rule) writes one trace per question; a chat teacher samples at its temperature.
    if n_samples > 1 and has(cfg, "teacher.temperature") and get(cfg, "teacher.temperature") == 0:
        raise fail("teach.n_samples", n_samples, "more than 1 needs teacher.temperature > 0 (greedy decoding "
                                                 "repeats one answer)")


def check_teacher(cfg: DictConfig) -> None:
    """The teacher's settings that it has (a rule teacher has only a name)."""
    string(cfg, "teacher._target_")
    string(cfg, "teacher.name")
    optional = {
        "temperature": lambda key: number(cfg, key, 0.0, INF, high_open=True),
        "top_p": lambda key: number(cfg, key, 0.0, 1.0, low_open=True),
        "max_tokens": lambda key: positive_int(cfg, key),
        "batch_size": lambda key: positive_int(cfg, key),
        "concurrency": lambda key: positive_int(cfg, key),
        "max_retries": lambda key: integer(cfg, key, 0),
        "timeout_s": lambda key: number(cfg, key, 0.0, INF, low_open=True, high_open=True),
        "connect_timeout_s": lambda key: number(cfg, key, 0.0, INF, low_open=True, high_open=True),
        "backoff_s": lambda key: number(cfg, key, 0.0, INF, high_open=True),
        "backoff_max_s": lambda key: number(cfg, key, 0.0, INF, high_open=True),
        "model": lambda key: string(cfg, key),
        "base_url": lambda key: string(cfg, key),
        "api_key_env": lambda key: string(cfg, key, optional=True),
        "dtype": lambda key: choice(cfg, key, tuple(DTYPES)),
        "device": lambda key: choice(cfg, key, TEACHER_DEVICES),
        "use_chat_template": lambda key: boolean(cfg, key),
        "seed": lambda key: integer(cfg, key, 0),
    }
    for name, check in optional.items():
        if has(cfg, f"teacher.{name}"):
            check(f"teacher.{name}")
    if has(cfg, "teacher.base_url") and not get(cfg, "teacher.base_url").startswith(("http://", "https://")):
        raise fail("teacher.base_url", get(cfg, "teacher.base_url"), "must start with http:// or https://")
    extra = get(cfg, "teacher.extra_body", default=None)
    if extra is not None and not isinstance(extra, Mapping):
        raise fail("teacher.extra_body", extra, "must be a mapping of request fields or null")
