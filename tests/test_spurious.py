"""Neural features, maps, spuriosity, spurious gap, mitigation and the FeatureBrowser, checked against
the demo's planted logo (protocol P2, METHODS.md B.4).

The two demo CNNs (planted and control) are trained once per session into the session cache
(``demo_cache``), and the tests use a subset of the test images to stay within a few minutes on
2 CPU cores.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score
from torch import nn

from faultlens.analysis import spurious as sp
from faultlens.analysis.mitigation import mitigate
from faultlens.data import demo as demo_data
from faultlens.data.demo import CUE_BOX, CUE_CLASS, add_cue
from faultlens.models.demo_cnn import to_tensor, trained_cnn
from faultlens.store import ArtifactStore

#: The ReLU output of the demo CNN's last conv layer (7×7 grid): what the linear head reads.
LAST = "features.7"
#: The ReLU output of the second conv layer (14×14 grid, 2 pixels per cell): for the pointing game.
MID = "features.4"
N_TEST = 1500


@dataclass
class Demo:
    model: nn.Module
    splits: dict
    X: torch.Tensor  # the test subset, transformed
    labels: np.ndarray
    cue: np.ndarray
    preds: np.ndarray

    @property
    def correct(self) -> np.ndarray:
        return self.preds == self.labels


def _demo(correlated: bool, cache: Path) -> Demo:
    splits = demo_data.load_spurious_fashion_mnist(correlated=correlated)
    tr, te = splits["train"], splits["test"]
    model = trained_cnn(tr.images, tr.labels, store=ArtifactStore(cache), progress=False)
    X = to_tensor(te.images[:N_TEST])
    with torch.inference_mode():
        preds = model(X).argmax(1).numpy()
    return Demo(model, splits, X, te.labels[:N_TEST], te.cue[:N_TEST], preds)


@pytest.fixture(scope="session")
def planted(demo_cache: Path) -> Demo:
    return _demo(True, demo_cache)


@pytest.fixture(scope="session")
def control(demo_cache: Path) -> Demo:
    return _demo(False, demo_cache)


def _with_and_without_logo(
    model: nn.Module, layer: str, images: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Pooled activations of 300 images as they are and with the logo stamped on."""
    nf = sp.NeuralFeatures(model, layer)
    plain = images[:300]
    a0 = nf.activations(to_tensor(plain))
    return a0, nf.activations(to_tensor(add_cue(plain, np.ones(len(plain), dtype=bool))))


def cue_unit(model: nn.Module, layer: str, images: np.ndarray) -> tuple[int, float]:
    """The channel whose pooled activation best separates the same images with and without the
    logo stamped on (AUROC): the logo is the only difference, so class content cannot confound."""
    a0, a1 = _with_and_without_logo(model, layer, images)
    y = np.r_[np.zeros(len(a0)), np.ones(len(a1))]
    auc = np.array([roc_auc_score(y, np.r_[a0[:, k], a1[:, k]]) for k in range(a0.shape[1])])
    k = int(np.argmax(auc))
    return k, float(auc[k])


def _no_cue_images(d: Demo) -> np.ndarray:
    te = d.splits["test"]
    return te.images[~te.cue]


# --------------------------------------------------------------------------- planted truth


def logo_rise(model: nn.Module, layer: str, images: np.ndarray) -> np.ndarray:
    """Per channel, the mean rise of its pooled activation when the logo is stamped on the same
    images (paired: the logo is the only difference)."""
    a0, a1 = _with_and_without_logo(model, layer, images)
    return (a1 - a0).mean(axis=0)


#: A channel that rises by this much with the logo responds to it: on the planted CNN 5 of Shirt's
#: top 10 do (up to 2.27), on the control CNN (logo not correlated with the label) none (at most
#: 0.62), on an AMD EPYC.
LOGO_RISE = 1.0


def _shirt_top10(d: Demo) -> list[int]:
    nf = sp.NeuralFeatures(d.model, LAST)
    return sp.top_features(nf.importance(nf.activations(d.X), d.labels, d.preds), n=10)[CUE_CLASS]


@pytest.mark.slow
def test_a_logo_feature_is_among_shirt_top10_by_importance(planted: Demo, control: Demo) -> None:
    """Among the 10 features the FeatureBrowser lists for Shirt, the planted CNN has one that
    responds to the logo and the control CNN none. Not "the logo unit in the top 5": which unit
    learns the logo, and how high it ranks, depends on the CPU the CNN was trained on (float
    rounding of its kernels); on an AMD EPYC the unit that best separates logo from no logo
    (AUROC) ranked 7th, with ranks 3-7 within 12 % of each other in importance."""
    rise = logo_rise(planted.model, LAST, _no_cue_images(planted))
    top = _shirt_top10(planted)
    assert max(rise[top]) >= LOGO_RISE, f"no logo feature in Shirt's top 10 {top}: {rise[top]}"
    rise_c = logo_rise(control.model, LAST, _no_cue_images(control))
    assert max(rise_c[_shirt_top10(control)]) < LOGO_RISE


@pytest.mark.slow
def test_importance_is_mean_activation_of_correct_images_times_head_weight(planted: Demo) -> None:
    nf = sp.NeuralFeatures(planted.model, LAST)
    acts = nf.activations(planted.X)
    assert acts.shape == (N_TEST, 64) and acts.dtype == np.float32
    imp = nf.importance(acts, planted.labels, planted.preds)
    assert nf.head is not None and nf.head.name == "head"
    assert imp.shape == (10, 64)
    # importance is exactly mean(activation over correct shirts) ⊙ head weight
    m = (planted.labels == CUE_CLASS) & planted.correct
    w = planted.model.head.weight.detach().numpy()[CUE_CLASS]
    np.testing.assert_allclose(imp[CUE_CLASS], acts[m].mean(0) * w, rtol=1e-5)


@pytest.mark.slow
def test_cue_feature_map_points_at_the_logo(planted: Demo) -> None:
    # At the 14×14 layer (2 px per cell). The margin of 1 px at 28×28 is the pointing game's own
    # tolerance (15 px at 224 px, Zhang et al. 2016, is 1.9 px at 28 px); the unit is an edge
    # detector of the bright patch, so its peak sits on the patch's border.
    k, _ = cue_unit(planted.model, MID, _no_cue_images(planted))
    nf = sp.NeuralFeatures(planted.model, MID)
    maps = nf.activation_maps(planted.X[planted.cue][:200], feature=k)
    assert maps.shape == (200, 28, 28)
    assert maps.min() >= 0 and maps.max() <= 1
    # per-image scale: 1 at the grid's peak; bilinear upsampling (cv2.resize's half-pixel centres)
    # puts no pixel exactly on a cell centre, so the image's peak is a little below 1
    assert (maps.reshape(200, -1).max(1) > 0.6).all()
    hit = sp.pointing_game(maps, CUE_BOX, margin=1)
    assert hit.mean() >= 0.9, hit.mean()
    share, area = sp.energy_share(maps, CUE_BOX)
    assert np.nanmean(share) > 3 * area
    # the same unit on images without the logo does not point there
    maps0 = nf.activation_maps(planted.X[~planted.cue][:200], feature=k)
    assert sp.pointing_game(maps0, CUE_BOX, margin=1).mean() < 0.5
    # at the last conv layer (7×7) the energy share is still well above the area share
    k7, _ = cue_unit(planted.model, LAST, _no_cue_images(planted))
    maps7 = sp.NeuralFeatures(planted.model, LAST).activation_maps(planted.X[planted.cue][:200], k7)
    assert np.nanmean(sp.energy_share(maps7, CUE_BOX)[0]) > 2 * area


@pytest.mark.slow
def test_spurious_gap_planted_vs_control(planted: Demo, control: Demo) -> None:
    # As in Spuriosity Rankings: rank the images once (here by the planted model's logo feature, a
    # feature annotated spurious), then measure each model's gap on that same ranking.
    assert np.array_equal(planted.X, control.X)  # the control differs in training only
    k, _ = cue_unit(planted.model, LAST, _no_cue_images(planted))
    acts = sp.NeuralFeatures(planted.model, LAST).activations(planted.X)
    score = sp.spuriosity(acts, planted.labels, {CUE_CLASS: [k]})
    assert np.isnan(score[planted.labels != CUE_CLASS]).all()
    z = score[planted.labels == CUE_CLASS]
    assert abs(z.mean()) < 1e-6 and abs(z.std() - 1) < 1e-6  # a single feature's z-score
    shirts = planted.labels == CUE_CLASS
    top = np.argsort(np.where(shirts, score, -np.inf))[-50:]
    assert planted.cue[top].mean() > 2 * planted.cue[shirts].mean()  # it surfaces the logo
    p = sp.spurious_gap(score, planted.correct, planted.labels, k=50).table.iloc[0]
    c = sp.spurious_gap(score, control.correct, control.labels, k=50).table.iloc[0]
    print(f"\nfeature ranking: planted {p.to_dict()}\ncontrol {c.to_dict()}")
    assert p["gap"] >= 40 and p["ci_low"] > 0, p
    # Measured: the control's gap on this ranking is negative (about -30 points), not zero: the
    # logo unit also responds to shirt content (bright top-left regions) that the control model
    # finds hard. So the check is "planted far above control", and the oracle ranking below
    # (the logo itself) shows the control's gap is near zero.
    assert c["ci_high"] < p["ci_low"] and p["gap"] - c["gap"] >= 50
    rng = np.random.default_rng(0)
    oracle = np.where(shirts, planted.cue + 0.01 * rng.random(len(shirts)), np.nan)
    po = sp.spurious_gap(oracle, planted.correct, planted.labels, k=40).table.iloc[0]
    co = sp.spurious_gap(oracle, control.correct, control.labels, k=40).table.iloc[0]
    print(f"oracle ranking: planted {po.to_dict()}\ncontrol {co.to_dict()}")
    assert po["gap"] >= 60 and po["ci_low"] > 0
    assert abs(co["gap"]) <= 20 and co["ci_low"] < 0 < co["ci_high"]


@pytest.mark.slow
def test_mitigation_raises_the_planted_group(planted: Demo) -> None:
    k, _ = cue_unit(planted.model, LAST, _no_cue_images(planted))
    tr, va, te = (planted.splits[s] for s in ("train", "val", "test"))
    nf = sp.NeuralFeatures(planted.model, LAST)
    res = mitigate(
        nf, {CUE_CLASS: [k]}, (to_tensor(tr.images), tr.labels), (to_tensor(va.images), va.labels),
        (planted.X, planted.labels), groups=te.planted_group[:N_TEST],
    )  # fmt: skip
    g = "group shirt_without_logo (%)"
    assert res.value(g, "after") >= res.value(g, "before") + 10
    assert res.value("overall accuracy (%)", "after") >= res.value("overall accuracy (%)") - 2
    assert res.value("worst-group accuracy (%)", "after") > res.value(
        "worst-group accuracy (%)", "before"
    )
    assert np.array_equal(res.correct_before, planted.correct)
    assert set(res.change) <= {"fixed", "broken", "unchanged"} and (res.change == "fixed").any()
    # the returned model carries the new head and reproduces correct_after; the original is untouched
    with torch.inference_mode():
        after = res.model(planted.X).argmax(1).numpy() == planted.labels
    assert np.array_equal(after, res.correct_after)
    assert not torch.equal(res.model.head.weight, planted.model.head.weight)


def _random_split(n: int, seed: int) -> tuple[torch.Tensor, np.ndarray]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 8, 8, generator=g), np.random.default_rng(seed).integers(0, 3, n)


class CastHeadNet(nn.Module):
    """A float32 conv body feeding a linear head of any dtype, with or without a bias."""

    def __init__(self, dtype: torch.dtype = torch.float32, bias: bool = True) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 8, 3)
        self.act = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(8, 3, bias=bias).to(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.pool(self.act(self.conv(x))).flatten(1)
        return self.head(h.to(self.head.weight.dtype))


def _mitigate_random(model: nn.Module):
    tr, va, te = _random_split(200, 1), _random_split(100, 2), _random_split(100, 3)
    nf = sp.NeuralFeatures(model.eval(), "act")
    res = mitigate(
        nf, {0: [1, 2], 1: [3], 2: [4]}, tr, va, te,
        lr=0.1, epochs=15, target_gap=-1e9, max_val_drop=100, k=20,
    )  # fmt: skip
    with torch.inference_mode():
        correct = res.model(te[0]).argmax(1).numpy() == te[1]
    return res, correct


def test_mitigation_keeps_a_bias_free_head_bias_free() -> None:
    """The preview used to train a bias the returned model then dropped (review bug)."""
    model = CastHeadNet(bias=False)
    res, correct = _mitigate_random(model)
    assert res.info["best_epoch"] > 0  # a retrained head was chosen
    assert res.model.head.bias is None
    assert not torch.equal(res.model.head.weight, model.head.weight)
    # the returned model reproduces the reported after-accuracy image by image
    assert np.array_equal(correct, res.correct_after)
    assert res.value("overall accuracy (%)") == pytest.approx(100.0 * correct.mean())


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_mitigation_trains_any_head_dtype_on_cpu_float32_features(dtype: torch.dtype) -> None:
    """Head weights are copied to CPU float32 for training (the features are CPU float32); the
    returned head keeps its own device and dtype. (A CUDA head takes the same path: ``.cpu()``.)"""
    from faultlens.analysis.mitigation import _head_params

    model = CastHeadNet(dtype)
    w, b = _head_params(model.head)
    assert (w.dtype, w.device, b.dtype, b.device) == (torch.float32, torch.device("cpu")) * 2
    w.add_(1.0)  # a copy: the model is untouched
    assert not torch.equal(w, model.head.weight.float())
    assert _head_params(nn.Linear(4, 2, bias=False))[1] is None

    res, correct = _mitigate_random(model)
    head = res.model.head
    assert (head.weight.dtype, head.bias.dtype) == (dtype, dtype)
    assert head.weight.device == model.head.weight.device
    assert res.info["best_epoch"] > 0
    if dtype == torch.float64:  # exact; float16 logits are rounded, so near-ties may flip
        assert np.array_equal(correct, res.correct_after)
    else:
        assert (correct == res.correct_after).mean() >= 0.95


# --------------------------------------------------------------------------- Grad-CAM and maps


class RegionNet(nn.Module):
    """Logits depend only on the image region R (rows 14-20, cols 20-28 of a 24×32 image)."""

    R = (14, 20, 20, 28)

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        gate = torch.zeros(1, 1, 24, 32)
        r0, r1, c0, c1 = self.R
        gate[..., r0:r1, c0:c1] = 1
        self.register_buffer("gate", gate)
        self.conv = nn.Conv2d(1, 6, 3, padding=1, bias=False)
        self.down = nn.Conv2d(6, 8, 2, stride=2, bias=False)  # 12×16 grid: upsampling is tested
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.down(torch.relu(self.conv(x * self.gate))))
        return self.head(h.mean(dim=(2, 3)))


def test_grad_cam_puts_its_mass_on_the_region_the_logit_depends_on() -> None:
    model = RegionNet().eval()
    x = torch.rand(16, 1, 24, 32)
    cams = sp.grad_cam(model, "down", x, targets=None)
    assert cams.shape == (16, 24, 32) and cams.min() >= 0 and cams.max() <= 1
    r0, r1, c0, c1 = RegionNet.R
    # 1 conv pixel + one 2-px cell of bilinear spread around R
    box = (r0 - 3, r1 + 3, c0 - 3, c1 + 3)
    share, area = sp.energy_share(cams, box)
    assert np.nanmean(share) > 0.95 and area < 0.25
    assert sp.pointing_game(cams, RegionNet.R).mean() >= 0.9
    # a fixed target class for all images works too and Grad-CAM never leaves inference mode on
    assert sp.grad_cam(model, "down", x, targets=1).shape == (16, 24, 32)


class TokenNet(nn.Module):
    """A ViT-shaped toy: patchify to 4×4 tokens plus a CLS token, one block, a linear head."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.patch = nn.Conv2d(3, 8, 4, stride=4)
        self.cls = nn.Parameter(torch.zeros(1, 1, 8))
        self.block = nn.Sequential(nn.LayerNorm(8), nn.Linear(8, 8), nn.GELU())
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.patch(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.cls.expand(len(x), -1, -1), t], dim=1)
        return self.head(self.block(t)[:, 0])


def test_vit_tokens_become_a_grid_without_the_cls_token() -> None:
    model = TokenNet().eval()
    x = torch.rand(5, 3, 16, 16)
    nf = sp.NeuralFeatures(model, "block")
    acts = nf.activations(x)
    assert acts.shape == (5, 8)
    maps = nf.activation_maps(x, feature=2)
    assert maps.shape == (5, 16, 16) and maps.min() >= 0 and maps.max() <= 1
    assert sp.grad_cam(model, "block", x, targets=0).shape == (5, 16, 16)
    # the head reads the CLS token through no pooling we can see: not a plain linear head after
    # the block's pooled tokens → importance falls back to gradients (with images given)
    labels = np.array([0, 1, 2, 0, 1])
    imp = nf.importance(acts, labels, labels, images=x)
    assert imp.shape == (3, 8) and np.isfinite(imp).all()


class GapNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.relu = nn.ReLU()
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.relu(self.conv(x)).mean(dim=(2, 3)))


def test_pil_images_with_transform_and_gradient_weights_match_the_linear_head() -> None:
    from PIL import Image

    from tests.helpers import blob_images, tiny_transform

    model = GapNet().eval()
    imgs, labels = blob_images(12)
    pil = [Image.fromarray(im) for im in imgs]
    nf = sp.NeuralFeatures(model, "relu", transform=tiny_transform)
    acts = nf.activations(pil)
    assert acts.shape == (12, 8)
    x = torch.stack([tiny_transform(p) for p in pil])
    np.testing.assert_allclose(acts, sp.NeuralFeatures(model, "relu").activations(x), rtol=1e-6)
    w = nf.class_weights()
    assert nf.head is not None and nf.head.name == "head"
    np.testing.assert_array_equal(w, model.head.weight.detach().numpy())
    # the gradient fallback (for heads that are not linear) gives the same weights on a GAP head
    np.testing.assert_allclose(nf._gradient_weights(pil, labels), w, atol=1e-6)


def test_overlay_and_colormap() -> None:
    cm = sp.colormap(np.linspace(0, 1, 5))
    assert cm.shape == (5, 3) and cm.dtype == np.uint8
    lum = cm.astype(float) @ [0.299, 0.587, 0.114]
    assert (np.diff(lum) > 0).all()  # perceptual: brightness rises monotonically
    img = np.full((28, 28), 100, dtype=np.uint8)
    heat = np.zeros((7, 7), dtype=np.float32)
    heat[0, 0] = 1
    out = sp.overlay(img, heat, opacity=0.6)
    assert out.shape == (28, 28, 3) and out.dtype == np.uint8
    assert sp.overlay(img, heat, opacity=0.0).tolist() == np.repeat(img[..., None], 3, -1).tolist()
    assert (sp.overlay(img, heat, opacity=1.0)[0, 0] == sp.colormap(np.array(1.0))).all()
    with pytest.raises(ValueError, match="opacity"):
        sp.overlay(img, heat, opacity=1.5)


# --------------------------------------------------------------------------- bad input


def test_unknown_layer_lists_close_names(tiny_net) -> None:
    with pytest.raises(ValueError, match=r"no layer 'cnv'.*Close names: \['conv'\]"):
        sp.NeuralFeatures(tiny_net, "cnv")
    with pytest.raises(ValueError, match="Close names"):
        sp.grad_cam(tiny_net, "hed", torch.rand(2, 3, 16, 16))


def test_maps_of_a_layer_without_spatial_dimensions_fail_clearly(tiny_net) -> None:
    nf = sp.NeuralFeatures(tiny_net, "head")
    with pytest.raises(ValueError, match="no spatial dimensions"):
        nf.activation_maps(torch.rand(2, 3, 16, 16), feature=0)
    with pytest.raises(IndexError, match="out of range"):
        sp.NeuralFeatures(tiny_net, "conv").activation_maps(torch.rand(2, 3, 16, 16), feature=99)
    with pytest.raises(TypeError, match="transform"):
        sp.NeuralFeatures(tiny_net, "conv").activations([object()])


def test_k_larger_than_the_class_is_clamped_with_a_warning() -> None:
    labels = np.r_[np.zeros(10, int), np.ones(40, int)]
    score = np.r_[np.arange(10.0), np.arange(40.0)]
    correct = np.r_[np.arange(10) >= 5, np.ones(40, bool)]
    with pytest.warns(sp.SpuriousWarning, match="k=20 clamped to 5"):
        gap = sp.spurious_gap(score, correct, labels, k=20)
    assert gap[0] == 100.0 and gap[1] == 0.0
    t = gap.table.set_index("class")
    assert t.loc[0, "k"] == 5 and t.loc[1, "k"] == 20
    assert t.loc[0, "ci_low"] < 100 < t.loc[0, "ci_high"] + 1e-9 or t.loc[0, "ci_high"] <= 100
    with pytest.warns(sp.SpuriousWarning, match="clamped"):
        fg = sp.feature_gaps(np.c_[score, -score], correct, labels, cls=0, k=20)
    assert fg["gap"].tolist() == [100.0, -100.0]


def test_class_without_correct_images_is_skipped_with_a_reason(tiny_net) -> None:
    x = torch.rand(9, 3, 16, 16)
    labels = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2])
    preds = np.array([0, 0, 1, 1, 1, 0, 0, 0, 1])  # class 2: never right
    nf = sp.NeuralFeatures(tiny_net, "conv")
    acts = nf.activations(x)
    with pytest.warns(sp.SpuriousWarning, match="class 2 has no correctly classified images"):
        imp = nf.importance(acts, labels, preds)
    assert np.isnan(imp[2]).all() and np.isfinite(imp[:2]).all()
    assert nf.skipped == [{"class": 2, "reason": nf.skipped[0]["reason"]}]
    assert "3 labelled" in nf.skipped[0]["reason"]
    assert 2 not in sp.top_features(imp)


def test_spuriosity_and_gap_input_checks() -> None:
    with pytest.raises(IndexError, match="out of range"):
        sp.spuriosity(np.zeros((4, 2)), np.zeros(4, int), {0: [5]})
    with pytest.raises(ValueError, match="differ"):
        sp.spurious_gap(np.zeros(3), np.zeros(4, bool), np.zeros(4, int))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = sp.spuriosity(np.ones((4, 2)), np.zeros(4, int), {0: [0, 1]})  # constant: z = 0
    assert (s == 0).all()
    assert json.dumps(sp.spurious_gap(np.arange(4.0), np.ones(4, bool), np.zeros(4, int), k=2))


# --------------------------------------------------------------------------- FeatureBrowser


def _send_mark(fb, mark: str) -> None:
    """What the front end does when a mark button is pressed: a set_mark message."""
    fb._on_custom_msg(fb, {"type": "set_mark", "mark": mark}, [])


def _analysis(d: Demo, folder: Path | None, class_names: list[str] | None = None, n: int = 600):
    import pandas as pd

    from faultlens.analysis.result import Analysis
    from faultlens.data.sources import ArraySource

    te = d.splits["test"]
    names = class_names or list(demo_data.CLASS_NAMES)
    src = ArraySource(te.images[:n], te.labels[:n], class_names=names)
    if folder is not None:  # an analysis folder exists (saved); records are not written elsewhere
        folder.mkdir(parents=True, exist_ok=True)
    table = pd.DataFrame({
        "id": [f"t{i}" for i in range(n)], "label": d.labels[:n], "pred": d.preds[:n],
        "correct": d.correct[:n], "source_index": np.arange(n), "cue": d.cue[:n],
    })  # fmt: skip
    return Analysis(table, class_names=names, source=src, folder=folder)


@pytest.mark.slow
def test_feature_browser_class_feature_marks_persist(planted: Demo, tmp_path: Path) -> None:
    from faultlens.models.demo_cnn import demo_transform
    from faultlens.ui.features import FeatureBrowser

    a = _analysis(planted, tmp_path / "an")
    fb = FeatureBrowser(a, planted.model, LAST, demo_transform, k=4, gap_k=20)
    fb.class_index = CUE_CLASS  # as JS does
    feats = [f["feature"] for f in fb.features]
    rise = logo_rise(planted.model, LAST, _no_cue_images(planted))
    k = max(feats, key=lambda f: rise[f])  # the listed feature that responds most to the logo
    assert fb.feature == feats[0] and len(feats) == 10 and rise[k] >= LOGO_RISE  # see top-10 test
    fb.feature = k
    g = fb.groups
    assert g["feature"] == k and len(g["top"]["rows"]) == 4 and len(g["bottom"]["rows"]) == 4
    shirts = np.flatnonzero(planted.labels[:600] == CUE_CLASS)
    assert set(g["top"]["rows"]) <= set(shirts.tolist())
    # top images activate the feature more than bottom ones; the gap row has a CI
    assert min(g["top"]["acts"]) >= max(g["bottom"]["acts"])
    assert g["gap"]["ci_low"] <= g["gap"]["gap"] <= g["gap"]["ci_high"]
    assert fb.selection.tolist() == sorted(g["top"]["rows"] + g["bottom"]["rows"])
    # images on demand: original beside its overlay, as PNG
    pairs = fb.tile_pngs(g["top"]["rows"][:2])
    assert len(pairs) == 2 and all(p[0][:8] == b"\x89PNG\r\n\x1a\n" and p[1] != p[0] for p in pairs)
    fb.map_kind = "gradcam"
    assert fb.maps(g["top"]["rows"][:2]).shape == (2, 28, 28)
    sent = []
    fb.send = lambda content, buffers=None: sent.append((content, buffers))
    fb._on_custom_msg(fb, {"type": "tiles", "rows": g["top"]["rows"][:3], "req": 1}, [])
    assert sent[0][0]["rows"] == g["top"]["rows"][:3] and len(sent[0][1]) == 6
    fb._on_custom_msg(fb, {"type": "tiles", "rows": [10**6]}, [])
    assert "out of range" in fb.status

    # the strip is empty until a feature is marked spurious
    assert fb.strip["rows"] == []
    _send_mark(fb, "spurious")  # as JS does
    path = tmp_path / "an" / "annotations.json"
    saved = json.loads(path.read_text())
    assert saved["marks"][0] | {"updated": None} == {
        "layer": LAST, "class": CUE_CLASS, "class_name": "Shirt", "feature": k,
        "mark": "spurious", "updated": None,
    }  # fmt: skip
    assert fb.spurious_features() == {CUE_CLASS: [k]}
    assert fb.strip["features"] == [k] and len(fb.strip["rows"]) > 0
    assert np.all(np.diff(fb.strip["score"]) >= 0)
    other = next(f for f in feats if f != k)
    fb.feature = other
    assert fb.mark == ""  # shows the new feature's mark, does not copy the old one
    _send_mark(fb, "core")
    fb.feature = k
    assert fb.mark == "spurious"
    csv_path = fb.export_annotations(tmp_path / "marks.csv")
    assert csv_path.read_text().count("\n") == 3

    # a new browser on the same folder (a kernel restart) sees the marks
    fb2 = FeatureBrowser(a, planted.model, LAST, demo_transform)
    assert {(m["feature"], m["mark"]) for m in fb2.annotations} == {
        (k, "spurious"),
        (other, "core"),
    }
    fb2.class_index = CUE_CLASS
    assert fb2.spurious_features() == {CUE_CLASS: [k]}
    fb2.feature = k
    assert fb2.mark == "spurious"
    _send_mark(fb2, "")  # unmark
    assert fb2.spurious_features() == {}
    # marks of another layer are kept untouched
    fb3 = FeatureBrowser(a, planted.model, "features.4", demo_transform)
    fb3.class_index = CUE_CLASS
    _send_mark(fb3, "core")
    assert {m["layer"] for m in json.loads(path.read_text())["marks"]} == {LAST, "features.4"}
    _send_mark(fb3, "maybe")
    assert "mark must be one of" in fb3.status
    with pytest.raises(Exception, match="mark must be one of"):
        fb3.set_mark(CUE_CLASS, 0, "maybe")


def test_feature_browser_never_puts_class_names_into_html(tiny_net, tmp_path: Path) -> None:
    import pandas as pd

    from faultlens.analysis.result import Analysis
    from faultlens.data.sources import ArraySource
    from faultlens.ui.features import FeatureBrowser
    from tests.helpers import blob_images, tiny_transform

    evil = "<img src=x onerror=alert(1)>"
    imgs, labels = blob_images(12)
    names = [evil, "b", "c"]
    preds = labels.copy()
    preds[labels == 2] = 0  # class 2: no correct image → skipped with a reason, no crash
    table = pd.DataFrame({"id": [str(i) for i in range(12)], "label": labels, "pred": preds,
                          "correct": preds == labels, "source_index": np.arange(12)})  # fmt: skip
    a = Analysis(table, class_names=names, source=ArraySource(imgs, labels, class_names=names))
    fb = FeatureBrowser(a, tiny_net, "conv", tiny_transform)
    assert fb.class_names[0] == evil  # sent as data; the front end writes it with textContent
    assert "class 2 has no correctly classified images" in fb.status
    assert fb.skipped[0]["class"] == 2
    fb.class_index = 2
    assert fb.features == [] and fb.feature == -1 and fb.groups == {}
    fb.class_index = 0
    out = fb.to_html()
    assert evil not in out and "&lt;img src=x onerror=alert(1)&gt;" in out
    _send_mark(fb, "spurious")  # no folder: kept in memory, said so
    assert "in memory" in fb.status and fb.spurious_features() == {0: [fb.feature]}
    js = (Path(sp.__file__).parents[1] / "ui" / "static" / "features.js").read_text()
    assert "innerHTML" not in js.replace("never innerHTML", "")


def test_offline_efficientnet_lite_features_maps_and_head() -> None:
    """The offline model works too: its head is found, maps come at image resolution."""
    from PIL import Image
    from skimage import data

    from faultlens.models.embedders import EfficientNetLiteEmbedder

    emb = EfficientNetLiteEmbedder(224, device="cpu")
    imgs = [Image.fromarray(data.coffee()), Image.fromarray(data.chelsea())]
    nf = sp.NeuralFeatures(emb.module, "_bn1", transform=emb.transform)
    acts = nf.activations(imgs)
    assert acts.shape == (2, 1280)
    labels = np.array([967, 285])  # espresso, Egyptian cat: what the model predicts for these
    with pytest.warns(sp.SpuriousWarning, match="and 997 more class"):
        imp = nf.importance(acts, labels, labels)
    assert nf.head is not None and nf.head.name == "_fc"
    k = int(np.nanargmax(imp[967]))
    maps = nf.activation_maps(imgs, feature=k)
    assert maps.shape == (2, 224, 224) and maps.max() <= 1.0 and maps.min() >= 0.0
    cams = sp.grad_cam(
        emb.module, "_conv_head", torch.stack([emb.transform(i) for i in imgs]), [967, 285]
    )
    assert cams.shape == (2, 224, 224)


def test_feature_browser_shows_its_first_feature_at_once(tiny_net) -> None:
    """Regression: the first feature was picked before the observers existed, so no images showed."""
    import pandas as pd

    from faultlens.analysis.result import Analysis
    from faultlens.data.sources import ArraySource
    from faultlens.ui.features import FeatureBrowser
    from tests.helpers import blob_images, tiny_transform

    imgs, labels = blob_images(30)
    table = pd.DataFrame({"id": [str(i) for i in range(30)], "label": labels, "pred": labels,
                          "correct": True, "source_index": range(30)})  # fmt: skip
    a = Analysis(table, class_names=["r", "g", "b"], source=ArraySource(imgs, labels))
    fb = FeatureBrowser(a, tiny_net, "conv", tiny_transform, k=3, gap_k=5)
    assert fb.feature >= 0
    assert len(fb.groups["top"]["rows"]) == 3 and len(fb.groups["bottom"]["rows"]) == 3


# --------------------------------------------------------------------------- "spurious?" suggestions


def test_map_evidence_tells_a_corner_cue_from_the_object() -> None:
    """A map on a small bright square in the corner, away from the object, is off the object, on
    the border and concentrated; a map spread over the object is none of these."""
    from faultlens.analysis.suspects import foreground, map_evidence

    img = np.zeros((2, 28, 28), np.float32)
    img[:, 8:22, 9:19] = 0.6  # the object
    img[:, 1:4, 1:4] = 1.0  # a cue in the top-left corner, not touching it
    obj = foreground(img)
    assert obj[0, 10, 10] and not obj[0, 2, 2] and obj[0].sum() == 14 * 10
    corner = np.zeros((2, 28, 28))
    corner[:, 0:5, 0:5] = 1.0
    on_object = img * (img < 1.0)
    cue, core = map_evidence(corner, obj), map_evidence(on_object, obj)
    assert cue["off_object"] == pytest.approx(1.0) and core["off_object"] == pytest.approx(0.0)
    assert cue["border"] > 0.5 > core["border"] == pytest.approx(0.0)
    assert cue["concentration"] > 2 * core["concentration"]
    assert np.isnan(map_evidence(np.zeros((1, 8, 8)), np.ones((1, 8, 8), bool))["off_object"])


#: The second planted cue: a plus sign in the bottom-right corner (another shape and place than
#: the demo's square logo top-left), on 95 % of the training Pullovers and 5 % of the rest; on 30 %
#: of every class in the test images.
PLUS_CLASS = 2


def add_plus(images: np.ndarray, mask: np.ndarray) -> np.ndarray:
    out = images.copy()
    out[mask, 21:26, 23] = 255
    out[mask, 23, 21:26] = 255
    return out


def _cue_rise(model: nn.Module, plain: np.ndarray, stamp) -> np.ndarray:
    """Per channel of LAST, the mean rise of its pooled activation with the cue stamped on."""
    nf = sp.NeuralFeatures(model, LAST)
    on = stamp(plain, np.ones(len(plain), dtype=bool))
    return (nf.activations(to_tensor(on)) - nf.activations(to_tensor(plain))).mean(axis=0)


def _suspects_first(a, model: nn.Module, cls: int, rise: np.ndarray, tmp: Path) -> None:
    from faultlens.analysis.feature_index import FeatureIndex
    from faultlens.analysis.suspects import rank_suspects
    from faultlens.models.demo_cnn import demo_transform

    index = FeatureIndex(a, model, LAST, demo_transform, store=ArtifactStore(tmp))
    ranked = rank_suspects(index, cls)
    top10 = index.top_features(cls, 10)
    cue = max(top10, key=lambda f: rise[f])  # the top-10 feature that responds most to the cue
    assert rise[cue] >= LOGO_RISE, f"no cue feature in the top 10 {top10}: {rise[top10]}"
    assert sorted(ranked["feature"]) == sorted(top10)
    assert ranked["feature"].iloc[0] == cue, ranked
    assert bool(ranked["suggest"].iloc[0])


@pytest.mark.slow
def test_the_logo_feature_is_the_first_spurious_suspect_on_the_demo(
    planted: Demo, tmp_path: Path
) -> None:
    rise = logo_rise(planted.model, LAST, _no_cue_images(planted))
    _suspects_first(_analysis(planted, None, n=N_TEST), planted.model, CUE_CLASS, rise, tmp_path)


@pytest.mark.slow
def test_a_plus_cue_bottom_right_is_the_first_spurious_suspect(tmp_path: Path) -> None:
    """A second planted cue on a second CNN: its feature leads the suspects of its class."""
    import pandas as pd

    from faultlens.analysis.result import Analysis
    from faultlens.data.sources import ArraySource

    splits = demo_data.load_spurious_fashion_mnist(correlated=False, n_train_per_class=800)
    tr, te = splits["train"], splits["test"]
    rng = np.random.default_rng(1)
    cue_tr = rng.random(len(tr.labels)) < np.where(tr.labels == PLUS_CLASS, 0.95, 0.05)
    cue_te = rng.random(len(te.labels)) < 0.3
    x_tr, x_te = add_plus(tr.images, cue_tr), add_plus(te.images, cue_te)[:N_TEST]
    model = trained_cnn(x_tr, tr.labels, store=ArtifactStore(tmp_path), epochs=6, progress=False)
    with torch.inference_mode():
        preds = model(to_tensor(x_te)).argmax(1).numpy()
    labels = te.labels[:N_TEST]
    right = preds == labels
    pullover = labels == PLUS_CLASS  # the shortcut: Pullovers without the plus fail
    assert (
        right[pullover & cue_te[:N_TEST]].mean() > right[pullover & ~cue_te[:N_TEST]].mean() + 0.5
    )
    names = list(demo_data.CLASS_NAMES)
    table = pd.DataFrame({"id": [f"t{i}" for i in range(N_TEST)], "label": labels, "pred": preds,
                          "correct": right, "source_index": np.arange(N_TEST)})  # fmt: skip
    a = Analysis(table, class_names=names, source=ArraySource(x_te, labels, class_names=names))
    rise = _cue_rise(model, te.images[~cue_te][:300], add_plus)
    _suspects_first(a, model, PLUS_CLASS, rise, tmp_path / "cache")


def test_feature_index_batches_caches_and_resumes_after_a_stop(tiny_net, tmp_path: Path) -> None:
    """Activations are computed a batch at a time (never more images decoded at once), written per
    shard; a computation stopped after its first shard resumes there, and a finished one is read
    back without running the model."""
    import pandas as pd

    from faultlens.analysis import feature_index as fi
    from faultlens.analysis.result import Analysis
    from faultlens.data.sources import ArraySource
    from tests.helpers import blob_images, tiny_transform

    n = fi.SHARD + 200
    imgs, labels = blob_images(n)
    table = pd.DataFrame({"id": [str(i) for i in range(n)], "label": labels, "pred": labels,
                          "correct": True, "source_index": range(n)})  # fmt: skip
    a = Analysis(table, class_names=["r", "g", "b"], source=ArraySource(imgs, labels))
    store = ArtifactStore(tmp_path)
    seen: list[int] = []
    handle = tiny_net.conv.register_forward_hook(lambda _m, i, _o: seen.append(len(i[0])))

    def stop(done: int, _total: int) -> None:
        if done > fi.SHARD:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fi.FeatureIndex(a, tiny_net, "conv", tiny_transform, batch_size=100, store=store,
                        progress=stop)  # fmt: skip
    assert max(seen) == 100  # one batch at a time
    first = sum(seen)
    seen.clear()
    index = fi.FeatureIndex(a, tiny_net, "conv", tiny_transform, batch_size=100, store=store)
    assert sum(seen) - 1 == n - fi.SHARD  # only the unfinished shard ran (+1: the head's probe)
    reference = sp.NeuralFeatures(tiny_net, "conv").activations(
        torch.stack([tiny_transform(a.image(r)) for r in range(n)])
    )
    np.testing.assert_allclose(index.acts, reference, rtol=1e-5, atol=1e-6)
    seen.clear()
    again = fi.FeatureIndex(a, tiny_net, "conv", tiny_transform, store=store)
    handle.remove()
    assert sum(seen) <= 1 and first > fi.SHARD  # read back: at most the head's one-image probe
    np.testing.assert_array_equal(again.acts, index.acts)


def test_feature_browser_static_copy_has_png_and_escaped_html(tiny_net, tmp_path: Path) -> None:
    import base64

    import pandas as pd

    from faultlens.analysis.result import Analysis
    from faultlens.data.sources import ArraySource
    from faultlens.ui.features import FeatureBrowser
    from tests.helpers import blob_images, tiny_transform

    imgs, labels = blob_images(30)
    names = ["<b>r</b>", "g", "b"]
    table = pd.DataFrame({"id": [str(i) for i in range(30)], "label": labels, "pred": labels,
                          "correct": True, "source_index": range(30)})  # fmt: skip
    a = Analysis(table, class_names=names, source=ArraySource(imgs, labels))
    fb = FeatureBrowser(
        a, tiny_net, "conv", tiny_transform, k=3, gap_k=5, store=ArtifactStore(tmp_path)
    )
    data, _meta = fb._repr_mimebundle_()
    png = base64.b64decode(data["image/png"])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<b>r</b>" not in data["text/html"] and "&lt;b&gt;r&lt;/b&gt;" in data["text/html"]
    assert (
        data["image/png"] in data["text/html"]
        and "application/vnd.jupyter.widget-view+json" in data
    )
    assert fb.selection.tolist() == sorted(fb.groups["top"]["rows"] + fb.groups["bottom"]["rows"])
    with pytest.raises(ValueError, match="read-only"):
        fb.selection[0] = 1


def test_one_pooling_rule_for_embeddings_and_features() -> None:
    """LayerEmbedder and NeuralFeatures pool a ViT block the same way: the mean of the patch tokens
    (the CLS token left out), which is the mean of the grid the maps show."""
    from faultlens.models.embedders import LayerEmbedder
    from faultlens.models.layers import pool, to_grid

    model = TokenNet().eval()
    x = torch.rand(4, 3, 16, 16)
    acts = sp.NeuralFeatures(model, "block").activations(x)
    emb = LayerEmbedder(model, "block", lambda im: im, device="cpu")(x)
    np.testing.assert_allclose(emb, acts / np.linalg.norm(acts, axis=1, keepdims=True), rtol=1e-5)
    tokens = torch.rand(2, 17, 8)
    np.testing.assert_allclose(pool(tokens), to_grid(tokens).mean(dim=(2, 3)), rtol=1e-6)
    assert not torch.allclose(pool(tokens), tokens.mean(dim=1))  # the CLS token is not averaged in
