"""Trait types shared by the widgets: validation lives in the type, so a widget declares a trait
and its checks in one line (errors are ``TraitError`` naming the trait and the fix).

- :class:`Binary` — bytes that travel as one binary buffer (``from_json`` takes the memoryview
  the front end sends).
- :class:`RowIndices` — uint32 little-endian row indices, as :class:`Binary`, range-checked
  against the widget's row count.
- :class:`Selection` — the public typed view of a selection: a sorted, unique, read-only uint32
  numpy array; assigning anything :func:`~faultlens.ui.rows.coerce_rows` takes selects it.
- :class:`Choice` — a string that must be one of a fixed tuple or of another trait's list.
- :class:`IntWithin`, :class:`FloatRange`, :class:`IndexList` — bounded numbers and lists.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import traitlets as t

from faultlens.ui._validate import one_of, within
from faultlens.ui.rows import coerce_rows


def _bytes_from_json(js: Any, _obj: Any) -> bytes:
    if js is None:
        return b""
    if isinstance(js, memoryview):
        return js.tobytes()
    return bytes(js)


class Binary(t.Bytes):
    """Bytes sent as one binary buffer; accepts the memoryview the front end sends."""

    def __init__(self, default_value: bytes = b"", **kwargs: Any) -> None:
        super().__init__(default_value, **kwargs)
        self.metadata.setdefault("from_json", _bytes_from_json)


class RowIndices(Binary):
    """uint32 little-endian row indices (a multiple of 4 bytes), every one below the widget's
    ``count`` trait (default ``n_points``)."""

    def __init__(self, count: str = "n_points", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.count = count

    def validate(self, obj: Any, value: Any) -> bytes:
        value = super().validate(obj, value)
        if len(value) % 4:
            msg = f"{self.name} must be uint32 bytes (a multiple of 4 long), got {len(value)} bytes"
            raise t.TraitError(msg)
        n = getattr(obj, self.count)
        rows = np.frombuffer(value, dtype="<u4")
        if len(rows) and int(rows.max()) >= n:
            msg = f"{self.name} has row index {int(rows.max())}: the rows are 0..{n - 1}"
            raise t.TraitError(msg)
        return value


class Selection(t.TraitType):
    """Selected rows as a sorted, unique, read-only uint32 numpy array. Any value
    :func:`~faultlens.ui.rows.coerce_rows` takes (row indices, a bool mask, a pandas index) is
    coerced; a wrong one raises its ``IndexError``/``TypeError``/``ValueError``."""

    info_text = "row indices or a bool mask"

    def __init__(self, count: str = "n_points", **kwargs: Any) -> None:
        super().__init__(np.zeros(0, dtype=np.uint32), **kwargs)
        self.count = count

    def validate(self, obj: Any, value: Any) -> np.ndarray:
        rows = np.array(coerce_rows(value, getattr(obj, self.count)), dtype=np.uint32)
        rows.flags.writeable = False
        return rows

    def make_dynamic_default(self) -> np.ndarray:
        rows = np.zeros(0, dtype=np.uint32)
        rows.flags.writeable = False
        return rows


class Choice(t.Unicode):
    """A string that is one of ``choices``, or of the list in the trait named ``options`` plus
    ``extra`` (anything while that list is still empty: the widget has not filled it yet);
    ``action`` words the error ("cannot <action> 'x': choose one of …")."""

    def __init__(
        self,
        default_value: str,
        *,
        choices: Sequence[str] = (),
        options: str | None = None,
        extra: Sequence[str] = (),
        action: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(default_value, **kwargs)
        self.choices, self.options, self.extra, self.action = (
            tuple(choices),
            options,
            tuple(extra),
            action,
        )

    def validate(self, obj: Any, value: Any) -> str:
        value = super().validate(obj, value)
        if self.options is None:
            return one_of(self.name, value, self.choices, action=self.action)
        options = getattr(obj, self.options)
        if not options:  # the default, read before the widget has filled its options
            return value
        return one_of(self.name, value, [*options, *self.extra], action=self.action)


class IntWithin(t.Int):
    """An int within ``low..high`` (either may be None); ``clamp`` moves it inside instead of
    raising."""

    def __init__(
        self, default_value: int, low: int | None = None, high: int | None = None, *,
        clamp: bool = False, **kwargs: Any,
    ) -> None:  # fmt: skip
        super().__init__(default_value, **kwargs)
        self.low, self.high, self.clamp = low, high, clamp

    def validate(self, obj: Any, value: Any) -> int:
        value = int(super().validate(obj, int(value)))
        if self.clamp:
            value = value if self.low is None else max(self.low, value)
            return value if self.high is None else min(self.high, value)
        return int(within(self.name, value, self.low, self.high))


class FloatRange(t.List):
    """``[low, high]``: two finite floats with ``low <= high``."""

    def __init__(self, default_value: Sequence[float], **kwargs: Any) -> None:
        super().__init__(t.Float(), default_value=list(default_value), minlen=2, maxlen=2, **kwargs)

    def validate(self, obj: Any, value: Any) -> list[float]:
        lo, hi = (float(v) for v in super().validate(obj, value))
        if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
            msg = f"{self.name} must be [low, high] with low <= high, got {[lo, hi]}"
            raise t.TraitError(msg)
        return [lo, hi]


class IndexList(t.List):
    """Sorted unique ints in ``0..count(obj)-1``; ``count`` reads the bound from the widget and
    ``what`` names the entries in the error."""

    def __init__(self, count: Callable[[Any], int], what: str = "index", **kwargs: Any) -> None:
        super().__init__(t.Int(), **kwargs)
        self.count, self.what = count, what

    def validate(self, obj: Any, value: Any) -> list[int]:
        value = [int(v) for v in super().validate(obj, value)]
        n = self.count(obj)
        bad = [v for v in value if not 0 <= v < n]
        if bad:
            msg = f"{self.name} has unknown {self.what}(s) {bad}: use 0..{n - 1}"
            raise t.TraitError(msg)
        return sorted(set(value))
