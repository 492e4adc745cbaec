"""Validation of config values: one error type that names the key, the value and the rule."""

from __future__ import annotations

import math
from typing import Any, Sequence


class ConfigError(ValueError):
    """A config value is not allowed. The message names the key, the value and the rule."""

    def __init__(self, key: str, value: Any, rule: str):
        self.key, self.value, self.rule = key, value, rule
        super().__init__(f"{key} = {value!r}: {rule}")

    def __reduce__(self):  # picklable, so it crosses process boundaries (Ray, Tune) intact
        return (type(self), (self.key, self.value, self.rule))


def _finite(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(key, value, "must be a finite number")
    return float(value)


def _check(cond: bool, key: str, value: Any, rule: str) -> None:
    if not cond:
        raise ConfigError(key, value, rule)


def _check_int(key: str, value: Any, minimum: int) -> None:
    _check(isinstance(value, int) and not isinstance(value, bool), key, value, "must be an integer")
    _check(value >= minimum, key, value, f"must be >= {minimum}")


def _check_choice(key: str, value: Any, choices: Sequence[str]) -> None:
    _check(value in choices, key, value, f"must be one of {', '.join(choices)}")


def _check_optional_positive(key: str, value: Any) -> None:
    if value is not None:
        _check(_finite(key, value) > 0, key, value, "must be > 0 (or omitted)")


def _check_delta(key: str, value: Any) -> None:
    if value is not None:
        v = _finite(key, value)
        _check(0 < v < 1, key, value, "must be in (0, 1) (or omitted for the 1/n^1.1 default)")
