"""Checks shared by the widgets' trait validators: a clear ``TraitError`` naming the trait and the fix."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import traitlets as t


def one_of(name: str, value: Any, choices: Sequence[Any], *, action: str | None = None) -> Any:
    """``value`` if it is one of ``choices``; ``action`` words the error ("cannot <action> 'x'")."""
    if value not in choices:
        if action:
            msg = f"cannot {action} {value!r}: choose one of {list(choices)}"
        else:
            msg = f"{name} must be one of {list(choices)}, got {value!r}"
        raise t.TraitError(msg)
    return value


def within(name: str, value: float, low: float | None = None, high: float | None = None) -> float:
    """``value`` if ``low <= value <= high`` (either bound may be None)."""
    if (low is not None and value < low) or (high is not None and value > high):
        span = f"at least {low}" if high is None else f"within {low}..{high}"
        msg = f"{name} must be {span}, got {value}"
        raise t.TraitError(msg)
    return value
