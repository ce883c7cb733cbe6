"""Validators for task options, ``configure()`` settings and environment variables.

Plugins declare options with :class:`woflo.TaskOption`; its ``validate`` can be one of these, so
every option in woflo, built-in or third-party, fails the same way at decoration::

    from woflo import TaskOption, hookimpl
    from woflo.options import seconds, whole_number

    @hookimpl
    def woflo_add_options():
        return [
            TaskOption("attempts", 1, whole_number(minimum=1), "tries in all"),
            TaskOption("cooldown", 0.0, seconds(), "seconds between tries"),
        ]

    @task(attempts=0)   # OptionValueError: task 'f': attempts takes a whole number >= 1, not 0

A validator returns the value to keep (normalised: ``seconds()`` gives a ``float``) or raises
:class:`~woflo.errors.OptionTypeError` / :class:`~woflo.errors.OptionValueError`; its
``expected`` attribute says in words what it accepts. :func:`check` and :func:`from_env` apply
one to a ``configure()`` argument or an environment variable with the same message style.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

from woflo.errors import OptionError, OptionTypeError, OptionValueError

__all__ = [
    "Validator",
    "boolean",
    "callable_or_none",
    "check",
    "exception_types",
    "from_env",
    "invalid",
    "number",
    "option_error",
    "seconds",
    "whole_number",
]


class Validator:
    """A named check: ``validator(value)`` returns the value to keep or raises.

    :ivar expected: what it accepts, in words ("a whole number >= 0").
    """

    __slots__ = ("_check", "expected")

    def __init__(self, expected: str, check: Callable[[Any], Any]) -> None:
        self.expected = expected
        self._check = check

    def __call__(self, value: Any) -> Any:
        """Return ``value`` (normalised) or raise, saying what would be right."""
        return self._check(value)

    def __repr__(self) -> str:
        return f"<Validator: {self.expected}>"


def invalid(expected: str, value: Any, *, wrong_type: bool = False) -> OptionError:
    """The error a custom validator raises: ``raise invalid("a list of names", value)``.

    :param expected: what would be right, in words; the message reads "takes {expected}, not
        {value!r}", and names the option once woflo knows which one it is.
    :param wrong_type: an :class:`~woflo.errors.OptionTypeError` rather than an
        :class:`~woflo.errors.OptionValueError`.
    """
    kind = OptionTypeError if wrong_type else OptionValueError
    error: OptionError = kind(f"takes {expected}, not {value!r}")
    error.expected = expected
    return error


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _or(expected: str, *, none: bool, infinite: bool) -> str:
    """``expected``, with the extra values a validator accepts named."""
    extras = [e for e, on in (("inf (no limit)", infinite), ("None", none)) if on]
    return ", or ".join([expected, *extras])


def whole_number(*, minimum: int = 0, none: bool = False, infinite: bool = False) -> Validator:
    """A whole number ``>= minimum``; ``none``: ``None`` too, ``infinite``: ``math.inf`` too,
    both kept as ``None`` (no limit)."""
    expected = _or(f"a whole number >= {minimum}", none=none, infinite=infinite)

    def check(value: Any) -> int | None:
        if (value is None and none) or (infinite and value == math.inf):
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise invalid(expected, value, wrong_type=True)
        if value < minimum:
            raise invalid(expected, value)
        return value

    return Validator(expected, check)


def number(
    *,
    minimum: float = 0.0,
    exclusive: bool = False,
    none: bool = False,
    infinite: bool = False,
    noun: str = "number",
    prefix: str = "",
) -> Validator:
    """A real number ``>= minimum`` (``> minimum`` when ``exclusive``), as a ``float``.

    ``nan`` is always refused; ``inf`` only when ``infinite`` (it then means "no limit");
    ``none``: ``None`` is accepted too. ``noun`` and ``prefix`` word the message:
    ``number(minimum=1, noun="backoff factor")`` expects "a finite backoff factor >= 1".
    """
    bound = f"{'>' if exclusive else '>='} {minimum:g}"
    finite = "" if infinite else "finite "
    expected = _or(f"{prefix}a {finite}{noun} {bound}", none=none, infinite=infinite)

    def check(value: Any) -> float | None:
        if value is None and none:
            return None
        if not _is_number(value):
            raise invalid(expected, value, wrong_type=True)
        try:
            result = float(value)
        except OverflowError:  # an int too large for a float
            result = math.inf
        out_of_range = result < minimum or (exclusive and result == minimum)
        if math.isnan(result) or (math.isinf(result) and not infinite) or out_of_range:
            raise invalid(expected, value)
        return result

    return Validator(expected, check)


def seconds(*, positive: bool = False, none: bool = False, infinite: bool = False) -> Validator:
    """A duration in seconds: a number ``>= 0`` (``> 0`` when ``positive``), as a ``float``."""
    return number(exclusive=positive, none=none, infinite=infinite, prefix="seconds as ")


def boolean() -> Validator:
    """``True`` or ``False`` (not a truthy value)."""

    def check(value: Any) -> bool:
        if not isinstance(value, bool):
            raise invalid("True or False", value, wrong_type=True)
        return value

    return Validator("True or False", check)


def exception_types() -> Validator:
    """An exception type, or a non-empty tuple of them; kept as a tuple."""
    expected = "an exception type or a tuple of them, e.g. (ConnectionError, TimeoutError)"

    def check(value: Any) -> tuple[type[BaseException], ...]:
        types = value if isinstance(value, tuple) else (value,)
        if not types or not all(
            isinstance(t, type) and issubclass(t, BaseException) for t in types
        ):
            raise invalid(expected, value, wrong_type=True)
        return types

    return Validator(expected, check)


def callable_or_none(signature: str = "a callable") -> Validator:
    """A callable (described by ``signature``, e.g. ``"(error, attempt) -> bool"``) or ``None``."""
    expected = f"{signature} or None"

    def check(value: Any) -> Any:
        if value is not None and not callable(value):
            raise invalid(expected, value, wrong_type=True)
        return value

    return Validator(expected, check)


def check(name: str, value: Any, validator: Callable[[Any], Any]) -> Any:
    """Validate a setting given to a function (``configure(max_workers=0)``).

    :raises OptionTypeError: or :class:`~woflo.errors.OptionValueError`, naming the setting:
        "max_workers takes a whole number >= 1 or None (no limit), not 0".
    """
    try:
        return validator(value)
    except (TypeError, ValueError) as exc:
        raise option_error(name, value, exc) from None


def option_error(
    name: str, value: Any, exc: TypeError | ValueError
) -> OptionTypeError | OptionValueError:
    """The error ``exc`` of a validator, restated for the option ``name`` given ``value``."""
    expected = getattr(exc, "expected", None)
    message = f"{name} takes {expected}, not {value!r}" if expected else f"{name}={value!r}: {exc}"
    kind = OptionValueError if isinstance(exc, ValueError) else OptionTypeError
    error = kind(message)
    error.__cause__ = exc if expected is None else None
    return error


def from_env(variable: str, validator: Validator, default: Any) -> Any:
    """The value of the environment variable ``variable``, parsed and validated.

    Unset or empty gives ``default``. A number is parsed as an ``int`` if it is written as one,
    else as a ``float`` (``inf`` included).

    :raises OptionValueError: naming the variable, its value and what would be right:
        "WOFLO_MAX_WORKERS='0': takes a whole number >= 1 or None (no limit)".
    """
    raw = os.environ.get(variable, "")
    text = raw.strip()
    if not text:
        return default
    value: Any
    if text.lower() in ("none", "null"):
        value = None
    else:
        try:
            value = int(text)
        except ValueError:
            try:
                value = float(text)
            except ValueError:
                value = text
    try:
        return validator(value)
    except (TypeError, ValueError):
        raise OptionValueError(
            f"environment variable {variable}={raw!r} is not valid: it takes {validator.expected}"
        ) from None
