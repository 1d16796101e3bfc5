"""The command line: `faultlens demo`, `prepare` and `report` end to end on small inputs; the input
transform from flags, a torchvision weights enum or a timm config; Lightning/DDP checkpoints; a
1-channel model; `--help` without torch."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import faultlens
from faultlens.analysis.projection import ProjectionWarning
from faultlens.cli import Preprocess, build_parser, load_classifier, main, preprocess_from_args
from faultlens.data.decode import encode_thumbnail
from faultlens.models.classifier import match_state_dict

WIDGETS = Path(faultlens.__file__).resolve().parents[1]


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


# --------------------------------------------------------------------------- the shell surface


def _run(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(WIDGETS) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=cwd, check=False
    )


@pytest.mark.parametrize("argv", [["--help"], ["prepare", "--help"], ["report", "--help"]])
def test_help_prints_without_importing_torch(argv: list[str], tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from faultlens.cli import main\n"
        "try:\n"
        f"    main({argv!r})\n"
        "except SystemExit as e:\n"
        "    assert e.code == 0, e.code\n"
        "heavy = sorted(m for m in ('torch', 'torchvision', 'numpy', 'pandas') if m in sys.modules)\n"
        "print('HEAVY', heavy)\n"
    )
    res = _run(code, tmp_path)
    assert res.returncode == 0, res.stderr
    assert "HEAVY []" in res.stdout
    assert "usage: faultlens" in res.stdout
    if argv == ["prepare", "--help"]:
        for flag in ("--weights", "--timm-config", "--mean", "--std", "--channels", "--resize"):
            assert flag in res.stdout


def test_version_is_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"faultlens {faultlens.__version__}"


# --------------------------------------------------------------------------- the input transform


def _prep_args(*argv: str) -> Preprocess:
    args = build_parser().parse_args(["prepare", "src", "--out", "o", "--arch", "x", *argv])
    return preprocess_from_args(args)


def test_transform_from_a_torchvision_weights_enum_then_flags_override() -> None:
    p = _prep_args("--weights", "ResNet18_Weights.IMAGENET1K_V1")
    assert (p.input_size, p.resize, p.channels, p.interpolation) == (224, 256, 3, "bilinear")
    assert p.mean == pytest.approx((0.485, 0.456, 0.406)) and p.std == pytest.approx(
        (0.229, 0.224, 0.225)
    )
    vit = _prep_args("--weights", "ViT_B_16_Weights.IMAGENET1K_SWAG_E2E_V1")
    assert (vit.input_size, vit.resize, vit.interpolation) == (384, 384, "bicubic")
    over = _prep_args("--weights", "ResNet18_Weights.IMAGENET1K_V1", "--input-size", "160")
    assert (over.input_size, over.resize) == (160, 256)
    # a grayscale model under an RGB enum: one mean/std, the channels' average
    gray = _prep_args("--weights", "ResNet18_Weights.IMAGENET1K_V1", "--channels", "1")
    assert gray.channels == 1 and gray.mean == pytest.approx((np.mean([0.485, 0.456, 0.406]),))
    t = gray.transform()
    x = t(Image.new("RGB", (300, 260), (255, 255, 255)))
    assert tuple(x.shape) == (1, 224, 224)
    assert float(x.mean()) == pytest.approx((1 - gray.mean[0]) / gray.std[0], rel=1e-4)


def test_transform_from_a_timm_config() -> None:
    pytest.importorskip("timm")
    p = _prep_args("--timm-config", "resnet50.a1_in1k")
    assert (p.input_size, p.resize, p.interpolation) == (224, int(224 / 0.95), "bicubic")


def test_transform_flags_alone_build_the_model_input() -> None:
    p = _prep_args("--input-size", "8", "--resize", "10", "--mean", "0.5", "--std", "0.25")
    assert p.mean == (0.5, 0.5, 0.5) and p.std == (0.25, 0.25, 0.25)
    img = np.zeros((10, 10, 3), dtype=np.uint8)
    img[1:9, 1:9] = 255  # the 8-px centre crop is all white
    x = p.transform()(Image.fromarray(img))
    assert tuple(x.shape) == (3, 8, 8)
    assert np.allclose(x.numpy(), (1 - 0.5) / 0.25)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--weights", "NoSuch_Weights.V1"], "--weights 'NoSuch_Weights.V1' is not a torchvision weights enum"),
        (["--channels", "1", "--mean", "0.1,0.2,0.3"], "--mean has 3 values but the model takes 1 channel(s)"),
        (["--std", "0"], "--std must be positive"),
        (["--weights", "ResNet18_Weights.IMAGENET1K_V1", "--timm-config", "resnet50"], "not both"),
    ],
)  # fmt: skip
def test_transform_mistakes_are_named(argv: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        _prep_args(*argv)


def test_mean_that_is_not_numbers_is_an_argparse_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["prepare", "src", "--out", "o", "--arch", "x", "--mean", "0.5,abc"])
    assert "'0.5,abc' is not comma-separated numbers" in capsys.readouterr().err


# --------------------------------------------------------------------------- checkpoints


class _Net(torch.nn.Module):
    def __init__(self, channels: int = 3, n_classes: int = 2) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.conv = torch.nn.Conv2d(channels, 4, 3, padding=1)
        self.head = torch.nn.Linear(4, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x).mean(dim=(2, 3)))


class _LitModule(torch.nn.Module):
    """What a LightningModule's state_dict looks like: the net under an attribute, plus a loss."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.model = net
        self.criterion = torch.nn.CrossEntropyLoss(weight=torch.ones(2))


def _trained(channels: int = 3) -> _Net:
    net = _Net(channels)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p))  # differ from a fresh _Net, which the factory returns
    return net


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _checkpoints(net: torch.nn.Module) -> dict[str, object]:
    state = net.state_dict()
    lit = _LitModule(net).state_dict()
    return {
        "plain": state,
        "lightning": {
            "epoch": 3,
            "global_step": 120,
            "pytorch-lightning_version": "2.4.0",
            "state_dict": lit,
            "optimizer_states": [{"state": {}, "param_groups": [{"lr": 0.1}]}],
            "hyper_parameters": {"lr": 0.1, "n_classes": 2},
        },
        "ddp": {f"module.{k}": v for k, v in state.items()},
        "lightning_ddp": {"state_dict": {f"model.module.{k}": v for k, v in state.items()}},
        "model_key": {"model": {f"module.{k}": v for k, v in state.items()}, "epoch": 9},
    }


@pytest.fixture
def net_module(tmp_path: Path) -> Iterator[str]:
    (tmp_path / "netmod_cli.py").write_text(
        "from tests.test_cli import _Net\n"
        "def make(num_classes=2, channels=3):\n"
        "    return _Net(channels, num_classes)\n"
        "def make_gray(n_classes):\n"
        "    return _Net(1, n_classes)\n"
    )
    sys.path.insert(0, str(tmp_path))
    yield "netmod_cli"
    sys.path.remove(str(tmp_path))
    sys.modules.pop("netmod_cli", None)


@pytest.mark.parametrize("kind", ["plain", "lightning", "ddp", "lightning_ddp", "model_key"])
def test_lightning_and_ddp_checkpoints_load(kind: str, tmp_path: Path, net_module: str) -> None:
    net = _trained()
    path = tmp_path / f"{kind}.ckpt"
    torch.save(_checkpoints(net)[kind], path)
    model = load_classifier(f"{net_module}:make", str(path), 2)
    assert _same_weights(model, net)
    x = torch.randn(2, 3, 8, 8)
    assert torch.equal(model(x), net(x))


def test_safetensors_checkpoint_loads(tmp_path: Path, net_module: str) -> None:
    from safetensors.torch import save_file

    net = _trained()
    save_file(
        {f"module.{k}": v.contiguous() for k, v in net.state_dict().items()},
        tmp_path / "w.safetensors",
    )
    assert _same_weights(
        load_classifier(f"{net_module}:make", str(tmp_path / "w.safetensors"), 2), net
    )


def test_match_state_dict_keeps_names_that_already_fit() -> None:
    # a torchvision-style model whose own names start with "model." is left alone
    state = {"model.weight": torch.zeros(1), "model.bias": torch.zeros(1)}
    assert match_state_dict(state, ["model.weight", "model.bias"]) is not state
    assert set(match_state_dict(state, ["model.weight", "model.bias"])) == set(state)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("whole_model", "holds pickled Python objects (a whole model saved with torch.save(model)?)"),
        ("no_weights", "is a dict without weights under any of"),
        ("wrong_classes", "weights have another shape, e.g. head.weight is (5, 4) in the file but (2, 4)"),
        ("wrong_arch", "does not fit the model _Net: 2 weights missing"),
        ("not_torch", "is not a torch checkpoint"),
        ("a_list", "holds a list, not a state dict of tensors"),
    ],
)  # fmt: skip
def test_bad_checkpoints_end_in_one_line(
    content: str, message: str, tmp_path: Path, net_module: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.pt"
    if content == "whole_model":
        torch.save(_trained(), path)
    elif content == "no_weights":
        torch.save({"epoch": 1, "hyper_parameters": {"lr": 0.1}}, path)
    elif content == "wrong_classes":
        torch.save(_Net(3, 5).state_dict(), path)
    elif content == "wrong_arch":
        state = _trained().state_dict()
        state.pop("head.weight")
        state.pop("head.bias")
        state["fc.weight"] = torch.zeros(2, 4)
        torch.save(state, path)
    elif content == "not_torch":
        path.write_bytes(b"this is not a checkpoint")
    else:
        torch.save([torch.zeros(2)], path)
    (tmp_path / "imgs" / "a").mkdir(parents=True)
    (tmp_path / "imgs" / "b").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "imgs" / "a" / "0.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "imgs" / "b" / "0.png")
    argv = ["prepare", str(tmp_path / "imgs"), "--out", str(tmp_path / "o")]
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--arch", f"{net_module}:make", "--checkpoint", str(path)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert message in err and str(path) in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_prepare_a_one_channel_model_from_a_ddp_checkpoint_then_report(
    tmp_path: Path, net_module: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A grayscale model, normalised with its own mean/std: the analysis holds exactly the
    probabilities the model gives on (gray - 0.5) / 0.25 of each 16-px image; then `report`."""
    rng = np.random.default_rng(3)
    images = {}
    for cls in ("a", "b"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(6):
            arr = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)
            Image.fromarray(arr).save(tmp_path / "imgs" / cls / f"{i}.png")
            images[f"{cls}/{i}.png"] = arr
    net = _trained(channels=1)
    ckpt = tmp_path / "gray.pt"
    torch.save({f"module.{k}": v for k, v in net.state_dict().items()}, ckpt)
    argv = ["prepare", str(tmp_path / "imgs"), "--out", str(tmp_path / "out")]
    argv += ["--arch", f"{net_module}:make_gray", "--checkpoint", str(ckpt), "--channels", "1"]
    argv += ["--input-size", "16", "--mean", "0.5", "--std", "0.25", "--image-size", "32"]
    argv += ["--workers", "0", "--thumbnails", "0"]
    with pytest.warns(ProjectionWarning):
        assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "faultlens report" in printed
    a = faultlens.load(tmp_path / "out")
    for row, rid in enumerate(a.table["id"]):
        gray = np.asarray(Image.fromarray(images[rid]).convert("L"), dtype=np.float32) / 255
        x = torch.from_numpy((gray - 0.5) / 0.25)[None, None]
        with torch.no_grad():
            want = torch.softmax(net(x), dim=1)[0].numpy()
        assert np.allclose(a.probs[row], want, atol=1e-5), rid

    out = tmp_path / "shared" / "report.html"
    out.parent.mkdir()
    assert (
        main(["report", str(tmp_path / "out"), "--out", str(out), "--title", "gray <model>"]) == 0
    )
    assert str(out.resolve()) in capsys.readouterr().out
    page = out.read_text()
    assert "gray &lt;model&gt;" in page and "gray <model>" not in page


def test_report_command_on_a_saved_analysis(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.test_report import make_analysis

    make_analysis(tmp_path / "an", ["cat", "dog", "bird"])
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert main(["report", str(tmp_path / "an")]) == 0  # default: ./report.html
    finally:
        os.chdir(cwd)
    assert (tmp_path / "report.html").is_file()
    assert "report written to" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(tmp_path / "nothing-here"), "--out", str(tmp_path / "r.html")])
    assert exit_info.value.code == 2
    assert "is not an analysis folder" in capsys.readouterr().err


def test_a_clip_embedder_without_open_clip_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "open_clip", None)  # as if the clip extra were not installed
    (tmp_path / "imgs" / "a").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "imgs" / "a" / "0.png")
    argv = ["prepare", str(tmp_path / "imgs"), "--out", str(tmp_path / "o"), "--arch", "resnet18"]
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--embedder", "open_clip:ViT-B-32:none"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert 'CLIP embeddings need open_clip: pip install "faultlens[clip]"' in err
    assert "Traceback" not in err
