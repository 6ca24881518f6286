"""A small, safe evaluator for the Python-like expressions in GSM-Symbolic's templates.

The released templates sample their variables with lines such as ``$x = range(10, 500, 10)``, constrain
them with ``divides(x * 12, k*y)`` and compute answers such as ``int((k * y) / (x * 12) * 100)``. These
are Python expressions; running them with ``eval`` would execute whatever a template file says. Instead an
expression is *parsed* with :func:`ast.parse` (which executes nothing) and its tree is walked here, with
a whitelist of node kinds, operators and functions, and bounds on sizes:

- values: int, float, Fraction, str, bool, None, lists/tuples/ranges of them, and :class:`Worded`
  (a number with a word form, ``("twice", 2)``);
- operators: arithmetic, comparison (chained, ``in``), ``and``/``or``/``not``, conditional expressions,
  indexing and slicing; no attribute access except the dotted names of whitelisted functions
  (``np.arange``, ``np.random.randint``);
- functions: the sampling helpers the templates use (:data:`FUNCTIONS`), each a small pure function;
- bounds: expressions of at most :data:`MAX_CHARS` characters and :data:`MAX_NODES` nodes, integers below
  ``10**MAX_INT_DIGITS``, exponents of at most :data:`MAX_EXPONENT`, sequences of at most :data:`MAX_ITEMS`;
  arguments that would make a function build a huge number first (``round(5, -10**9)``,
  ``Fraction("1e99999999")``) are refused before it runs.

Anything else raises :class:`UnsupportedExpression`; a template that needs it is skipped (and reported)
by :mod:`cmt.data.benchmarks.gsm_symbolic_templates`. Errors that depend on the drawn values (a division
by zero, an out-of-bounds number) raise the base :class:`TemplateExprError`, and the draw is retried.

The other safe evaluator, `cmt.rewards.arith`, reads the arithmetic a model writes (``1,200 × $3``) with
exact fractions and nothing else; templates need Python's syntax and number semantics (``f(1,200)`` is two
arguments; ``int(0.29 * 100)`` is 28 with Python's floats, 29 exactly), names, functions and sequences, so
neither is built on the other.
"""

from __future__ import annotations

import ast
import math
import operator
import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from typing import Any

MAX_CHARS = 2000
MAX_NODES = 400
MAX_INT_DIGITS = 30
MAX_EXPONENT = 64
MAX_ITEMS = 100_000
# The exponent of a number written in scientific notation inside text (``Fraction("1e5")``).
_EXPONENT = re.compile(r"[eE]\s*[+-]?([\d_]*)")


class TemplateExprError(ValueError):
    """An expression cannot be evaluated for this draw: a value leaves its bounds, a division by zero..."""


class UnsupportedExpression(TemplateExprError):
    """An expression uses syntax, names or functions the evaluator does not allow (whatever the draw)."""


@dataclass(frozen=True)
class Worded:
    """A number with its own written form (``("twice", 2)``, ``("5", 5)``): renders as ``text``, computes as
    ``value``, and indexes as the pair it was written as (``mult[1]`` is the number)."""

    text: str
    value: int | float | Fraction

    def __str__(self) -> str:
        return self.text


def _number(value: Any) -> Any:
    """The arithmetic value of an operand (a :class:`Worded` computes as its number)."""
    return value.value if isinstance(value, Worded) else value


def _check(value: Any) -> Any:
    """``value`` if it is within bounds, else :class:`TemplateExprError`."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and abs(value) >= 10**MAX_INT_DIGITS:
        raise TemplateExprError("integer too large")
    if isinstance(value, Fraction) and max(abs(value.numerator), value.denominator) >= 10**MAX_INT_DIGITS:
        raise TemplateExprError("fraction too large")
    if isinstance(value, float) and not math.isfinite(value):
        raise TemplateExprError("number is not finite")
    if isinstance(value, (list, tuple, str, range)) and len(value) > MAX_ITEMS:
        raise TemplateExprError("sequence too long")
    return value


def _power(base: Any, exponent: Any) -> Any:
    if not isinstance(exponent, (int, float, Fraction)) or abs(exponent) > MAX_EXPONENT:
        raise TemplateExprError("exponent out of bounds")
    return operator.pow(base, exponent)


def _repeat(left: Any, right: Any) -> Any:
    """``*``, bounding sequence repetition (``[..] * 2``) before it is built."""
    for seq, count in ((left, right), (right, left)):
        if isinstance(seq, (list, tuple, str)) and isinstance(count, int):
            if len(seq) * max(count, 0) > MAX_ITEMS:
                raise TemplateExprError("sequence too long")
    return operator.mul(left, right)


_BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: _repeat, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: _power,
}
_UNARY: dict[type, Callable[[Any], Any]] = {ast.USub: operator.neg, ast.UAdd: operator.pos, ast.Not: operator.not_}
_COMPARE: dict[type, Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt,
    ast.GtE: operator.ge, ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b,
}


def _sequence(value: Any) -> list | range:
    if isinstance(value, (list, tuple, range)):
        return value if isinstance(value, range) else list(value)
    raise TemplateExprError(f"expected a list, got {type(value).__name__}")


def _arange(start: Any, stop: Any = None, step: Any = 1) -> list:
    """Evenly spaced numbers in ``[start, stop)``, like ``numpy.arange`` without its float noise."""
    if stop is None:
        start, stop = 0, start
    if step == 0:
        raise TemplateExprError("arange step is zero")
    count = math.ceil((stop - start) / step)
    if count > MAX_ITEMS:
        raise TemplateExprError("sequence too long")
    values = [start + i * step for i in range(max(count, 0))]
    return [round(v, 10) if isinstance(v, float) else v for v in values]


def _range(*args: Any) -> range:
    if not all(isinstance(a, int) and not isinstance(a, bool) for a in args) or not 1 <= len(args) <= 3:
        raise TemplateExprError("range takes one to three integers")
    return _check(range(*args))


def _is_int(value: Any) -> bool:
    """Whether ``value`` is exactly a whole number (a float must be one exactly, noise is not rounded away)."""
    value = _number(value)
    if isinstance(value, float):
        return value.is_integer()
    return isinstance(value, (int, Fraction)) and value == int(value)


def _divides(value: Any, divisor: Any) -> bool:
    """Whether ``divisor`` divides ``value`` exactly (False for a zero divisor)."""
    value, divisor = _number(value), _number(divisor)
    if divisor == 0:
        return False
    return _is_int(Fraction(value) / Fraction(divisor))


def _round(value: Any, ndigits: Any = None) -> Any:
    """``round``, refusing more digits than a bounded number has (``round(5, -10**9)`` would compute
    ``10**(10**9)`` first)."""
    if ndigits is None:
        return round(value)
    if not isinstance(ndigits, int) or abs(ndigits) > MAX_INT_DIGITS:
        raise TemplateExprError("round's digits out of bounds")
    return round(value, ndigits)


def functions(rng: random.Random) -> dict[str, Callable[..., Any]]:
    """The whitelisted functions, the random ones drawing from ``rng``."""
    def sample(items: Any, k: Any = None) -> Any:
        items = _sequence(items)
        if not items:
            raise TemplateExprError("sample from an empty list")
        if k is None:
            return rng.choice(items)
        if not isinstance(k, int) or not 0 <= k <= len(items):
            raise TemplateExprError("sample size out of range")
        return rng.sample(items, k)

    def sample_sequential(items: Any, k: int) -> list:
        """``k`` consecutive items from a random start (``Monday, Tuesday, Wednesday``)."""
        items = list(_sequence(items))
        if not isinstance(k, int) or not 0 < k <= len(items):
            raise TemplateExprError("sample size out of range")
        start = rng.randrange(len(items) - k + 1)
        return items[start:start + k]

    def shuffle_list(items: Any) -> list:
        items = list(_sequence(items))
        rng.shuffle(items)
        return items

    def randint(low: int, high: int, size: int | None = None) -> Any:
        """``numpy.random.randint``: integers in ``[low, high)``, one or a list of ``size``."""
        if not (isinstance(low, int) and isinstance(high, int) and low < high):
            raise TemplateExprError("randint needs integers low < high")
        if size is None:
            return rng.randrange(low, high)
        if not isinstance(size, int) or not 0 <= size <= MAX_ITEMS:
            raise TemplateExprError("randint size out of range")
        return [rng.randrange(low, high) for _ in range(size)]

    def fraction(numerator: Any = 0, denominator: Any = None) -> Fraction:
        numerator = _number(numerator)
        if isinstance(numerator, str) and len(numerator) > 40:
            raise TemplateExprError("fraction text too long")
        # Fraction("1e99999999") would build the power of ten first: a few characters, minutes of CPU.
        if isinstance(numerator, str) and any(abs(int(e.replace("_", "") or 0)) > MAX_INT_DIGITS
                                              for e in _EXPONENT.findall(numerator)):
            raise TemplateExprError("exponent out of bounds in fraction text")
        try:
            return Fraction(numerator) if denominator is None else Fraction(numerator, _number(denominator))
        except (ValueError, TypeError, ZeroDivisionError) as exc:
            raise TemplateExprError(f"bad fraction: {exc}") from exc

    def numeric(fn: Callable[..., Any]) -> Callable[..., Any]:
        return lambda *args: fn(*(_number(a) for a in args))

    return {
        "range": _range, "sample": sample, "sample_sequential": sample_sequential, "shuffle_list": shuffle_list,
        "numbers_within": lambda low, high: _range(low, high + 1), "frange": _arange, "np.arange": _arange,
        "np.random.randint": randint, "fix_floats": lambda items: [round(v, 10) if isinstance(v, float) else v
                                                                     for v in _sequence(items)],
        "list": lambda items=(): list(_sequence(items)) if not isinstance(items, str) else list(items),
        "int": numeric(int), "float": numeric(float), "abs": numeric(abs), "round": numeric(_round),
        "min": numeric(min), "max": numeric(max), "sum": lambda items: sum(_number(v) for v in _sequence(items)),
        "len": len, "str": str, "Fraction": fraction, "format_frac": lambda v: str(fraction(v)),
        "is_int": _is_int, "divides": _divides,
    }


@lru_cache(maxsize=4096)
def parse(expression: str) -> ast.Expression:
    """The syntax tree of ``expression`` (parsed, never executed).

    Raises:
        UnsupportedExpression: It is too long, not an expression, or too large a tree.
    """
    if len(expression) > MAX_CHARS:
        raise UnsupportedExpression("expression too long")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as exc:
        raise UnsupportedExpression(f"not an expression: {exc.msg}") from exc
    if sum(1 for _ in ast.walk(tree)) > MAX_NODES:
        raise UnsupportedExpression("expression too large")
    return tree


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    raise UnsupportedExpression(f"unsupported call target {type(node).__name__}")


class _Evaluator:
    """Walks one parsed expression over ``names`` (variables and word lists) and ``funcs``."""

    def __init__(self, names: Mapping[str, Any], funcs: Mapping[str, Callable[..., Any]]):
        self.names, self.funcs = names, funcs

    def run(self, node: ast.AST) -> Any:
        method = getattr(self, f"_{type(node).__name__}", None)
        if method is None:
            raise UnsupportedExpression(f"unsupported syntax: {type(node).__name__}")
        return _check(method(node))

    def _Expression(self, node: ast.Expression) -> Any:
        return self.run(node.body)

    def _Constant(self, node: ast.Constant) -> Any:
        if node.value is not None and not isinstance(node.value, (int, float, str)):
            raise UnsupportedExpression(f"unsupported constant {type(node.value).__name__}")
        return node.value

    def _Name(self, node: ast.Name) -> Any:
        if node.id in self.names:
            return self.names[node.id]
        if node.id in ("True", "False", "None"):
            return {"True": True, "False": False, "None": None}[node.id]
        raise UnsupportedExpression(f"unknown name {node.id!r}")

    def _List(self, node: ast.List) -> list:
        return [self.run(e) for e in node.elts]

    def _Tuple(self, node: ast.Tuple) -> tuple:
        return tuple(self.run(e) for e in node.elts)

    def _BinOp(self, node: ast.BinOp) -> Any:
        op = _BINARY.get(type(node.op))
        if op is None:
            raise UnsupportedExpression(f"unsupported operator {type(node.op).__name__}")
        left, right = self.run(node.left), self.run(node.right)
        try:
            return op(_number(left), _number(right))
        except (ZeroDivisionError, OverflowError, TypeError, ValueError) as exc:
            raise TemplateExprError(f"{type(exc).__name__}: {exc}") from exc

    def _UnaryOp(self, node: ast.UnaryOp) -> Any:
        op = _UNARY.get(type(node.op))
        if op is None:
            raise UnsupportedExpression(f"unsupported operator {type(node.op).__name__}")
        try:
            return op(_number(self.run(node.operand)))
        except TypeError as exc:
            raise TemplateExprError(str(exc)) from exc

    def _BoolOp(self, node: ast.BoolOp) -> Any:
        result: Any = isinstance(node.op, ast.And)
        for value in node.values:
            result = self.run(value)
            if isinstance(node.op, ast.And) != bool(result):
                return result
        return result

    def _Compare(self, node: ast.Compare) -> bool:
        left = self.run(node.left)
        for op_node, right_node in zip(node.ops, node.comparators, strict=True):
            op, right = _COMPARE.get(type(op_node)), self.run(right_node)
            if op is None:
                raise UnsupportedExpression(f"unsupported comparison {type(op_node).__name__}")
            try:
                holds = op(_number(left), _number(right)) if not isinstance(op_node, (ast.In, ast.NotIn)) \
                    else op(left, right)
            except TypeError as exc:
                raise TemplateExprError(str(exc)) from exc
            if not holds:
                return False
            left = right
        return True

    def _IfExp(self, node: ast.IfExp) -> Any:
        return self.run(node.body) if self.run(node.test) else self.run(node.orelse)

    def _Subscript(self, node: ast.Subscript) -> Any:
        value = self.run(node.value)
        if isinstance(value, Worded):
            value = (value.text, value.value)
        if not isinstance(value, (list, tuple, str, range)):
            raise TemplateExprError(f"cannot index {type(value).__name__}")
        if isinstance(node.slice, ast.Slice):
            bounds = [None if part is None else self.run(part) for part in (node.slice.lower, node.slice.upper,
                                                                             node.slice.step)]
            if not all(b is None or isinstance(b, int) for b in bounds) or bounds[2] == 0:
                raise TemplateExprError("slice bounds must be integers")
            return value[slice(*bounds)]
        index = self.run(node.slice)
        if not isinstance(index, int) or not -len(value) <= index < len(value):
            raise TemplateExprError("index out of range")
        return value[index]

    def _Call(self, node: ast.Call) -> Any:
        name = _dotted(node.func)
        fn = self.funcs.get(name)
        if fn is None:
            raise UnsupportedExpression(f"unknown function {name!r}")
        if node.keywords:
            raise UnsupportedExpression("keyword arguments are not supported")
        args = [self.run(a) for a in node.args]
        try:
            return fn(*args)
        except TemplateExprError:
            raise
        except (TypeError, ValueError, ZeroDivisionError, OverflowError, IndexError) as exc:
            raise TemplateExprError(f"{name}: {type(exc).__name__}: {exc}") from exc


def evaluate(expression: str, names: Mapping[str, Any], funcs: Mapping[str, Callable[..., Any]]) -> Any:
    """The value of one template expression.

    Args:
        expression: Python-like expression text from a template.
        names: Variables and word lists it may refer to.
        funcs: The callable functions, :func:`functions` of the sampling's random source.

    Raises:
        UnsupportedExpression: Syntax, names or functions the evaluator does not allow.
        TemplateExprError: An out-of-bounds value or an arithmetic error (division by zero) in this draw.
    """
    return _Evaluator(names, funcs).run(parse(expression))
