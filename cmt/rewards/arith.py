"""A safe evaluator for the arithmetic a model writes in its reasoning (``12 + 5 * 3``, ``(27 - 7) / 2``).

The ``arithmetic`` correctness mode of CCRL checks a step such as ``5 * 3 = 15`` by evaluating its
left-hand side. Model output is untrusted text, so this module never calls ``eval``/``exec``: it is a
small recursive-descent parser over a fixed grammar, with exact rational arithmetic
(``fractions.Fraction``), that refuses anything outside its limits before doing expensive work:

    expression := term (("+" | "-") term)*
    term       := unary (("*" | "/") unary)*
    unary      := ("+" | "-") unary | atom
    atom       := number | "(" expression ")"
    number     := ["$"] digits ["." digits]      digits may use thousands separators: 1,200

``×`` and ``÷`` are read as ``*`` and ``/`` and the Unicode minus ``−`` as ``-``. There is no power
operator, no exponent notation and no names, so ``9**9**9`` and ``1e999999`` are rejected as syntax.
Every failure, whether syntax, a limit or a division by zero, is an :class:`ExpressionError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

_OPERATORS = {"+": "+", "-": "-", "−": "-", "*": "*", "×": "*", "/": "/", "÷": "/", "(": "(", ")": ")"}
_DIGITS = frozenset("0123456789")


class ExpressionError(ValueError):
    """The text is not an arithmetic expression this module will evaluate (syntax, limits, division by 0)."""


@dataclass(frozen=True)
class Limits:
    """Bounds that keep evaluation fast on hostile input.

    Attributes:
        max_chars: Longer text is rejected before it is read (an LHS a model writes is far shorter).
        max_digits: Most digits in one number literal, integer and fraction parts together.
        max_depth: Deepest nesting of parentheses and unary signs.
        max_magnitude: Largest absolute value of any literal or intermediate result.
    """

    max_chars: int = 256
    max_digits: int = 24
    max_depth: int = 32
    max_magnitude: int = 10**15


DEFAULT_LIMITS = Limits()


def _read_number(text: str, start: int, limits: Limits) -> tuple[Fraction, int]:
    """Read the literal starting at ``text[start]`` (a digit); return its value and the index after it."""
    end = start
    while end < len(text) and (text[end] in _DIGITS or text[end] == ","):
        end += 1
    integer = text[start:end]
    if "," in integer:
        groups = integer.split(",")
        if not (1 <= len(groups[0]) <= 3 and all(len(g) == 3 for g in groups[1:])):
            raise ExpressionError(f"malformed thousands separators in {integer!r}")
        integer = "".join(groups)
    fraction = ""
    if end < len(text) and text[end] == ".":
        frac_end = end + 1
        while frac_end < len(text) and text[frac_end] in _DIGITS:
            frac_end += 1
        fraction = text[end + 1:frac_end]
        if not fraction:
            raise ExpressionError("a decimal point must be followed by digits")
        end = frac_end
    if len(integer) + len(fraction) > limits.max_digits:
        raise ExpressionError(f"number literal longer than {limits.max_digits} digits")
    value = Fraction(int(integer + fraction), 10 ** len(fraction))
    if abs(value) > limits.max_magnitude:
        raise ExpressionError(f"number literal larger than {limits.max_magnitude}")
    return value, end


def _tokenize(text: str, limits: Limits) -> list[str | Fraction]:
    """Split ``text`` into operators/parentheses (as str) and numbers (as Fraction)."""
    tokens: list[str | Fraction] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char.isspace():
            i += 1
        elif char == "$" and i + 1 < len(text) and text[i + 1] in _DIGITS:
            i += 1  # a currency sign directly before a number is read as part of it
        elif char in _DIGITS:
            value, i = _read_number(text, i, limits)
            tokens.append(value)
        elif char in _OPERATORS:
            tokens.append(_OPERATORS[char])
            i += 1
        else:
            raise ExpressionError(f"unexpected character {char!r}")
    return tokens


class _Parser:
    """Recursive descent over a token list; the grammar is in the module docstring."""

    def __init__(self, tokens: list[str | Fraction], limits: Limits):
        self.tokens = tokens
        self.position = 0
        self.depth = 0
        self.limits = limits

    def _peek(self) -> str | Fraction | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def _checked(self, value: Fraction) -> Fraction:
        if abs(value) > self.limits.max_magnitude:
            raise ExpressionError(f"intermediate result larger than {self.limits.max_magnitude}")
        return value

    def _enter(self) -> None:
        self.depth += 1
        if self.depth > self.limits.max_depth:
            raise ExpressionError(f"nesting deeper than {self.limits.max_depth}")

    def expression(self) -> Fraction:
        value = self.term()
        while self._peek() in ("+", "-"):
            operator = self.tokens[self.position]
            self.position += 1
            right = self.term()
            value = self._checked(value + right if operator == "+" else value - right)
        return value

    def term(self) -> Fraction:
        value = self.unary()
        while self._peek() in ("*", "/"):
            operator = self.tokens[self.position]
            self.position += 1
            right = self.unary()
            if operator == "/" and right == 0:
                raise ExpressionError("division by zero")
            value = self._checked(value * right if operator == "*" else value / right)
        return value

    def unary(self) -> Fraction:
        token = self._peek()
        if token in ("+", "-"):
            self.position += 1
            self._enter()
            value = self.unary()
            self.depth -= 1
            return -value if token == "-" else value
        return self.atom()

    def atom(self) -> Fraction:
        token = self._peek()
        if isinstance(token, Fraction):
            self.position += 1
            return token
        if token == "(":
            self.position += 1
            self._enter()
            value = self.expression()
            self.depth -= 1
            if self._peek() != ")":
                raise ExpressionError("unbalanced parenthesis")
            self.position += 1
            return value
        raise ExpressionError("expected a number or '('" if token is None else f"unexpected {token!r}")


def evaluate(text: str, limits: Limits = DEFAULT_LIMITS) -> Fraction:
    """Evaluate an arithmetic expression exactly.

    Args:
        text: For example ``"12 + 5 * 3"``, ``"-(27 - 7) / 2"``, ``"1,200 × 0.5"``.
        limits: Input size, literal size, nesting and magnitude bounds (see :class:`Limits`).

    Returns:
        The exact value as a ``Fraction`` (``10 / 4`` is ``Fraction(5, 2)``).

    Raises:
        ExpressionError: For anything that is not a complete expression within ``limits``, and for
            division by zero. No other exception escapes, whatever the input.
    """
    if len(text) > limits.max_chars:
        raise ExpressionError(f"expression longer than {limits.max_chars} characters")
    parser = _Parser(_tokenize(text, limits), limits)
    value = parser.expression()
    if parser.position != len(parser.tokens):
        raise ExpressionError(f"unexpected {parser.tokens[parser.position]!r} after a complete expression")
    return value
