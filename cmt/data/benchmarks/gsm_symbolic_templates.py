"""Instantiate GSM-Symbolic templates: new problems from the released annotated templates, with a seed.

A template file (``templates/{symbolic,p1,p2}/NNNN.json``) holds a GSM8K test problem with its numbers and
names turned into slots. ``question_annotated`` is the question with ``{var,default}`` slots, then

- ``#init:`` lines ``- $x = range(10, 500, 10)`` / ``- name = sample(names)`` / ``- a, b = sample(l, 2)``:
  a ``$`` variable drawn from a list or range takes one element of it; several targets unpack a list;
- ``#conditions:`` lines that every accepted draw must satisfy (``- divides(x * 12, k*y)``);
- ``#answer: <expression>``, the answer of a draw.

``answer_annotated`` is the worked solution with ``{expression}`` slots and GSM8K's ``<<a*b=c>>``
annotations, ending in ``#### {expression}``.

An instance is drawn by rejection sampling: draw the ``#init`` variables, keep the draw when every condition
holds, render question and solution, and accept it when the solution's ``####`` value equals the
``#answer`` expression (the two are written separately in the templates; a disagreement is a draw the
template does not handle, and is redrawn). All expressions go through the safe evaluator
:mod:`cmt.data.benchmarks.template_expr`; nothing is executed.

The templates name word lists (``names``, ``fraction_alnum``, ``multi_times``...) whose contents the
release does not include; :data:`VOCABULARY` is ours, so sampled instances follow the templates'
structure but not the release's exact name and word distribution. Templates that use something the
evaluator does not support, or that yield no valid draw in ``max_attempts``, are skipped and listed by
:func:`load_templates` / :func:`sample_problems` (``docs/benchmarks.md`` gives the counts).
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from functools import partial
from pathlib import Path
from typing import Any

from cmt.data.answers import Number, parse_number
from cmt.data.benchmarks.gold import intermediate_values, strip_annotations
from cmt.data.benchmarks.source import BenchmarkSourceError
from cmt.data.benchmarks.template_expr import TemplateExprError, UnsupportedExpression, Worded, evaluate, functions
from cmt.data.problem import Problem

# Template folder of each variant (the paper's main set is "symbolic").
VARIANT_DIRS = {"main": "symbolic", "p1": "p1", "p2": "p2"}

_W = Worded
VOCABULARY: dict[str, list[Any]] = {
    "names_male": ["James", "Omar", "Liam", "Mateo", "Kenji", "Arjun", "Diego", "Yusuf", "Noah", "Ethan", "Luca",
                   "Hassan", "Tomas", "Wei", "Samuel", "Kwame", "Ivan", "Felix", "Ravi", "Oscar", "Hugo", "Malik",
                   "Andre", "Theo"],
    "names_female": ["Amara", "Sofia", "Mei", "Priya", "Elena", "Fatima", "Chloe", "Aisha", "Nadia", "Grace",
                     "Hana", "Lucia", "Zara", "Ingrid", "Leila", "Rosa", "Yara", "Keiko", "Olivia", "Maya", "Ana",
                     "Tara", "Noor", "Isla"],
    "currencies_sym": ["$", "€", "£", "¥", "₹"],
    "fractions": [Fraction(1, 2), Fraction(1, 3), Fraction(1, 4), Fraction(1, 5), Fraction(2, 3), Fraction(3, 4),
                  Fraction(2, 5), Fraction(3, 5), Fraction(1, 6), Fraction(1, 8)],
    "fraction_nums": [Fraction(1, 2), Fraction(1, 3), Fraction(1, 4), Fraction(1, 5), Fraction(1, 8), Fraction(1, 10)],
    "fraction_decimals": [0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.75],
    "fraction_alnum": [_W("half", Fraction(1, 2)), _W("third", Fraction(1, 3)), _W("quarter", Fraction(1, 4)),
                       _W("fifth", Fraction(1, 5)), _W("tenth", Fraction(1, 10))],
    "fraction_alph": [_W("half", Fraction(1, 2)), _W("a third", Fraction(1, 3)), _W("a quarter", Fraction(1, 4)),
                      _W("a fifth", Fraction(1, 5)), _W("two thirds", Fraction(2, 3)),
                      _W("three quarters", Fraction(3, 4))],
    "multi_times": [_W("twice", 2), _W("three times", 3), _W("four times", 4), _W("five times", 5)],
    "multiple_ice": [_W("double", 2), _W("triple", 3), _W("quadruple", 4)],
    "multiple": [_W("double", 2), _W("triple", 3), _W("quadruple", 4)],
    "fruits": ["apple", "banana", "orange", "pear", "peach", "mango", "plum", "kiwi", "pineapple", "lemon",
               "apricot", "melon"],
    "weights_sm": ["ounce", "gram"],
    "weights_med": ["pound", "kilogram"],
    "length_lg": ["mile", "kilometer"],
    "cities": ["Lagos", "Lima", "Osaka", "Toronto", "Lyon", "Pune", "Denver", "Porto", "Nairobi", "Seoul"],
    "sports": ["basketball", "soccer", "tennis", "volleyball", "baseball", "hockey", "badminton", "cricket"],
    "colors": ["red", "blue", "green", "yellow", "purple", "orange", "pink", "white", "black", "brown"],
    "weekdays": ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"],
}
VOCABULARY["names"] = VOCABULARY["names_male"] + VOCABULARY["names_female"]

_QUESTION_SLOT = re.compile(r"\{\s*([A-Za-z_]\w*)\s*,[^{}]*\}")
_EXPRESSION_SLOT = re.compile(r"\{([^{}]+)\}")
_TARGET = re.compile(r"\$?[A-Za-z_]\w*")


@dataclass(frozen=True)
class Template:
    """One parsed template.

    Attributes:
        id: ``<folder>/<number>`` (``symbolic/0000``).
        question: The question with ``{var,default}`` slots.
        init: ``(targets, expression)`` per ``#init`` line; a target is ``(name, draw_one)`` where
            ``draw_one`` marks a ``$`` variable.
        conditions: The ``#conditions`` expressions.
        answer: The ``#answer`` expression, or None when the template has none.
        solution: The worked solution with ``{expression}`` slots and ``<<...>>`` annotations.
        original_id: The GSM8K test index of the problem the template was made from.
    """

    id: str
    question: str
    init: tuple[tuple[tuple[tuple[str, bool], ...], str], ...]
    conditions: tuple[str, ...]
    answer: str | None
    solution: str
    original_id: int | None


def parse_template(data: Mapping[str, Any], template_id: str) -> Template:
    """A template file's content as a :class:`Template`.

    Raises:
        BenchmarkSourceError: A field is missing or an ``#init`` line is not ``targets = expression``.
    """
    try:
        annotated, solution = str(data["question_annotated"]), str(data["answer_annotated"])
    except KeyError as exc:
        raise BenchmarkSourceError(f"template {template_id}: no field {exc}") from exc
    question, _, rules = annotated.partition("#init:")
    init, conditions, answer, section = [], [], None, "init"
    for raw in rules.splitlines():
        line = raw.strip()
        if line.startswith("#conditions"):
            section = "conditions"
        elif line.startswith("#answer"):
            answer = line[len("#answer"):].lstrip(" :=").strip()
            answer = answer[1:-1] if answer.startswith("{") and answer.endswith("}") else answer
            answer = re.sub(r"\$(?=[A-Za-z_])", "", answer)
            section = "done"
        elif line.startswith("-") and section == "init":
            left, sep, expression = line[1:].partition("=")
            targets = [t.strip() for t in left.split(",")]
            if not sep or not all(_TARGET.fullmatch(t) for t in targets):
                raise BenchmarkSourceError(f"template {template_id}: cannot read #init line {line!r}")
            init.append((tuple((t.lstrip("$"), t.startswith("$")) for t in targets), expression.strip()))
        elif line.startswith("-") and section == "conditions":
            conditions.append(line[1:].strip())
    return Template(template_id, question.strip(), tuple(init), tuple(conditions), answer or None, solution,
                    data.get("id_orig"))


def _as_value(value: Any) -> Any:
    """A ``(written form, number)`` pair (``("twice", 2)``, ``(5, 5)``) becomes a :class:`Worded`."""
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], (str, int, float, Fraction)) \
            and isinstance(value[1], (int, float, Fraction)) and not isinstance(value[1], bool):
        return Worded(render(value[0]), value[1])
    return value


def _bind(targets: tuple[tuple[str, bool], ...], value: Any, names: dict[str, Any], rng: random.Random) -> None:
    """Assign one ``#init`` value to its targets (drawing one element for ``$`` targets given a list)."""
    values = [value] if len(targets) == 1 else value
    if len(targets) > 1 and (not isinstance(value, (list, tuple)) or len(value) != len(targets)):
        raise TemplateExprError(f"cannot unpack into {len(targets)} variables")
    for (name, draw_one), item in zip(targets, values, strict=True):
        if draw_one and isinstance(item, (list, range)):
            if not item:
                raise TemplateExprError(f"${name} drawn from an empty list")
            item = rng.choice(item)
        names[name] = _as_value(item)


def render(value: Any) -> str:
    """A value as the text shows it: words for :class:`Worded`, ``a/b`` fractions, Python's number form."""
    if isinstance(value, Fraction) and value.denominator == 1:
        return str(value.numerator)
    return str(value)


def _fill(text: str, pattern: re.Pattern, value_of) -> str:
    return pattern.sub(lambda m: render(value_of(m.group(1))), text)


@dataclass(frozen=True)
class Instance:
    """One accepted draw: the question, the worked solution and the gold answer."""

    question: str
    solution: str
    gold: str


def _gold_of(solution: str) -> Number:
    """The number after the rendered solution's last ``####``."""
    text = solution.rsplit("####", 1)[-1].strip() if "####" in solution else ""
    number = parse_number(text) if re.fullmatch(r"-?[\d,]*\.?\d+(?:/\d+)?", text) else None
    if number is None:
        raise TemplateExprError(f"solution ends without a number: {text[:40]!r}")
    return number


def _exact(value: Any) -> Fraction:
    """An ``#answer`` value as an exact fraction."""
    value = value.value if isinstance(value, Worded) else value
    if isinstance(value, bool) or not isinstance(value, (int, float, Fraction)):
        raise TemplateExprError(f"#answer is not a number: {value!r}")
    return Fraction(value)


def instantiate(template: Template, rng: random.Random, max_attempts: int = 3000) -> Instance | None:
    """One instance of ``template`` drawn with ``rng``, or None when no draw is valid within ``max_attempts``.

    Raises:
        UnsupportedExpression: The template needs syntax, names or functions the evaluator does not allow.
    """
    funcs = functions(rng)
    for _ in range(max_attempts):
        names: dict[str, Any] = dict(VOCABULARY)
        try:
            for targets, expression in template.init:
                _bind(targets, evaluate(expression, names, funcs), names, rng)
            if not all(evaluate(c, names, funcs) for c in template.conditions):
                continue
            question = _fill(template.question, _QUESTION_SLOT, names.__getitem__)
            solution = _fill(template.solution, _EXPRESSION_SLOT, partial(evaluate, names=names, funcs=funcs))
            gold = _gold_of(solution)
            if template.answer is not None and \
                    abs(_exact(evaluate(template.answer, names, funcs)) - gold.value) > Fraction(1, 10**6):
                continue
        except KeyError as exc:
            raise UnsupportedExpression(f"unknown variable {exc} in a question slot") from exc
        except UnsupportedExpression:
            raise
        except TemplateExprError:
            continue
        return Instance(" ".join(question.split()), solution.strip(), gold.canonical())
    return None


def load_templates(folder: str | Path) -> list[Template]:
    """Every template file (``NNNN.json``) of one variant folder, in file-name order.

    Raises:
        BenchmarkSourceError: The folder has no templates, or a file is malformed (file and line named).
    """
    folder = Path(folder)
    files = sorted(folder.glob("*.json"))
    if not files:
        raise BenchmarkSourceError(f"no GSM-Symbolic templates (*.json) in {folder}")
    templates = []
    for file in files:
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise BenchmarkSourceError(f"{file}:{exc.lineno}: not valid JSON ({exc.msg})") from exc
        templates.append(parse_template(data, f"{folder.name}/{file.stem}"))
    return templates


def sample_problems(templates: list[Template], variant: str, n: int | None, instances_per_template: int = 50,
                    seed: int = 0, max_attempts: int = 3000) -> tuple[list[Problem], dict[str, str]]:
    """Problems drawn from ``templates``, round-robin (instance 0 of every template, then instance 1, ...).

    Each (template, instance) pair has its own random source, seeded by ``seed``, the variant, the template
    and the instance number, so a problem does not change when ``n`` does.

    Args:
        templates: From :func:`load_templates`.
        variant: ``main``, ``p1`` or ``p2`` (used in ids).
        n: How many problems (None: ``instances_per_template`` of every usable template).
        instances_per_template: Instances per template (the release has 50).
        seed: The sampling seed.
        max_attempts: Draws tried per instance before the instance is given up.

    Returns:
        ``(problems, skipped)``: the problems, and template id -> why it was skipped.
    """
    problems: list[Problem] = []
    skipped: dict[str, str] = {}
    for k in range(instances_per_template):
        for template in templates:
            if n is not None and len(problems) >= n:
                return problems, skipped
            if template.id in skipped:
                continue
            rng = random.Random(f"{seed}:{variant}:{template.id}:{k}")
            try:
                instance = instantiate(template, rng, max_attempts)
            except UnsupportedExpression as exc:
                skipped[template.id] = str(exc)
                continue
            if instance is None:
                if k == 0:
                    skipped[template.id] = f"no valid draw in {max_attempts} attempts"
                continue
            problems.append(Problem(
                id=f"sampled_{variant}-{template.id.split('/')[-1]}-{k:02d}",
                question=instance.question, gold=instance.gold,
                meta={"solution": strip_annotations(instance.solution),
                      "intermediate": intermediate_values(instance.solution), "template": template.id,
                      "instance": k, "original_id": template.original_id, "seed": seed},
            ))
    return problems, skipped
