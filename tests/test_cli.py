"""The command line: `faultlens demo` and `faultlens prepare` end to end on small inputs."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import faultlens
from faultlens.analysis.projection import ProjectionWarning
from faultlens.cli import main
from faultlens.data.decode import encode_thumbnail


@pytest.mark.slow
def test_demo_command_writes_an_analysis_with_planted_truth(
    demo_cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "demo"
    assert (
        main(["demo", "--cache-dir", str(demo_cache), "--out", str(out), "--n-per-class", "30"])
        == 0
    )
    printed = capsys.readouterr().out
    assert "shirt_without_logo" in printed and "planted failure modes" in printed
    a = faultlens.load(out)
    assert len(a) == 300
    assert {"cue", "small", "planted_group"} <= set(a.table.columns)
    assert a.embeddings.shape == (300, 1280)
    assert a.arrays["imagenet_logits"].shape == (300, 1000)
    assert np.isfinite(a.table[["x", "y"]].to_numpy()).all()
    shirts = a.table[(a.table.planted_group == "shirt_without_logo")]
    assert shirts["correct"].mean() < 0.5  # the shortcut fails as planted


def test_prepare_command_on_a_folder_with_a_factory_model(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(5):
            arr = rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)
            Image.fromarray(arr).save(tmp_path / "imgs" / cls / f"{i}.png")
    (tmp_path / "imgs" / "a" / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    (tmp_path / "factory_mod.py").write_text(
        "import torch\n"
        "def make():\n"
        "    torch.manual_seed(0)\n"
        "    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 2))\n"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        with pytest.warns(ProjectionWarning):
            code = main(
                [
                    "prepare",
                    str(tmp_path / "imgs"),
                    "--arch",
                    "factory_mod:make",
                    "--input-size",
                    "16",
                    "--image-size",
                    "64",
                    "--out",
                    str(tmp_path / "out"),
                    "--workers",
                    "0",
                    "--thumbnails",
                    "12",
                ]
            )
    finally:
        sys.path.remove(str(tmp_path))
    assert code == 0
    a = faultlens.load(tmp_path / "out")
    assert len(a) == 10
    assert [s["id"] for s in a.skipped] == ["a/broken.jpg"]
    assert a.class_names == ["a", "b"]
    # the 24-px images' 12-px thumbnails were stored with the analysis
    assert a.meta["thumbnail_size"] == 12 and a.thumbnails is not None
    row = int(np.flatnonzero(a.table["id"] == "b/3.png")[0])
    want = encode_thumbnail(Image.open(tmp_path / "imgs" / "b" / "3.png").convert("RGB"), 12)
    assert a.thumbnail(row, 12) == want
    assert Image.open(io.BytesIO(want)).size == (12, 12)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["demo", "--n-per-class", "-1"], "argument --n-per-class: '-1' is not a whole number ≥ 1"),
        (["prepare", "x", "--out", "o", "--arch", "resnet18", "--batch-size", "0"],
         "argument --batch-size: '0' is not a whole number ≥ 1"),
        (["prepare", "/nonexistent/folder", "--out", "o", "--arch", "resnet18"],
         "faultlens prepare: error: '/nonexistent/folder' is neither a folder"),
        (["prepare", "IMGS", "--out", "o", "--arch", "no_such_module_x:make"],
         "--arch 'no_such_module_x:make': cannot find 'make' in module 'no_such_module_x'"),
        (["prepare", "IMGS", "--out", "o", "--arch", "resnet18", "--checkpoint", "/nope.pt"],
         "--checkpoint '/nope.pt': no such file"),
        (["prepare", "IMGS", "--out", "o", "--arch", "resnet18", "--thumbnails", "4"],
         "faultlens prepare: error: thumbnails=4: a thumbnail needs at least 8 pixels"),
    ],
)  # fmt: skip
def test_user_mistakes_end_in_one_line_without_a_traceback(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "imgs" / "a").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "imgs" / "a" / "0.png")
    argv = [str(tmp_path / "imgs") if a == "IMGS" else a for a in argv]
    argv = [str(tmp_path / a) if a == "o" else a for a in argv]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err + str(exit_info.value.code)
    assert message in err
    assert "Traceback" not in err
    assert exit_info.value.code != 0
