"""The widgets say when the kernel they run in can leave the page's messages unread (ipykernel 7.0
to 7.3, issue 1554: blank images, a queued cell that never runs), and name the fix."""

from __future__ import annotations

import sys
import warnings
from types import SimpleNamespace

import numpy as np
import pytest

from faultlens.ui.explorer import Explorer
from faultlens.ui.kernel import kernel_fault
from tests.helpers import analysis_from


@pytest.mark.parametrize("version", ["7.0.0", "7.0.1", "7.2.0", "7.3.0", "7.3.1rc1"])
def test_the_releases_that_strand_messages_are_named_with_the_fix(version: str) -> None:
    fault = kernel_fault(version)
    assert fault is not None
    assert f"ipykernel {version}" in fault and "1554" in fault and "ipykernel>=7.4" in fault


@pytest.mark.parametrize("version", ["6.29.5", "6.31.0", "7.4.0", "7.10.2", "8.0.0", "", None])
def test_other_releases_and_no_kernel_are_fine(version: str | None, monkeypatch) -> None:
    if version is None:  # no ipykernel imported: a script, not a kernel
        monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
    assert kernel_fault(version) is None


def _explorer() -> Explorer:
    label = np.arange(40) % 2
    return Explorer(analysis_from(label, label, ["a", "b"]))


def test_a_widget_made_in_a_faulty_kernel_warns_at_the_users_line(monkeypatch) -> None:
    monkeypatch.setitem(
        sys.modules, "ipykernel", SimpleNamespace(__version__="7.0.1", version_info=(7, 0, 1))
    )
    with pytest.warns(RuntimeWarning, match="ipykernel 7.0.1 can leave") as caught:
        _explorer()
    assert caught[0].filename == __file__  # the caller's line, not faultlens's


def test_a_widget_made_in_a_fixed_kernel_is_silent(monkeypatch) -> None:
    monkeypatch.setitem(
        sys.modules, "ipykernel", SimpleNamespace(__version__="7.4.0", version_info=(7, 4, 0))
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        _explorer()
