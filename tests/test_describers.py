"""The offline describers against planted truth: image properties, where the model looks, the user's
columns, concepts from examples, tags only with evidence, the ranked summary, the properties model
in the decoding pass, and CoCa captions without transformers."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from faultlens.analysis import describe
from faultlens.data.properties import PROPERTY_NAMES, compute_properties
from tests.planted_images import (
    PROPERTY_KINDS,
    SETS,
    STAMP_CELLS,
    edge_maps,
    planted_set,
    stamp,
)

N = 100


# --------------------------------------------------------------------------- image properties


@pytest.mark.parametrize("name", sorted(SETS))
def test_the_planted_property_ranks_first_on_every_kind(name: str) -> None:
    kinds = [k for k in PROPERTY_KINDS if not (name == "fashion" and k == "desaturated")]
    for kind in kinds:  # fashion is grey: nothing to desaturate
        imgs, members = planted_set(name, kind, seed=1, n=N)
        d = describe.image_properties(imgs, members)
        assert d.source == "image properties"
        assert {t for t, _ in d.terms} <= set(describe.PROPERTY_NAMES)
        assert d.terms[0][0] == PROPERTY_KINDS[kind], (name, kind, d.terms[:3])
        lo, hi = d.details["ci"][d.terms[0][0]]
        assert lo > 0 or hi < 0, (name, kind)
        effects = [abs(e) for _, e in d.terms]
        assert effects == sorted(effects, reverse=True)


def test_property_words_say_the_direction_and_the_values() -> None:
    imgs, members = planted_set("fashion", "smaller", seed=0, n=N)
    d = describe.image_properties(list(imgs), members)  # a list of arrays works as well
    words = d.details["words"]["object size"]
    assert words.startswith("smaller: foreground ") and "of the image" in words and "SD" in words
    imgs, members = planted_set("digits", "darker", seed=0, n=N)
    assert (
        describe.image_properties(imgs, members).details["words"]["brightness"].startswith("darker")
    )


def test_a_random_control_slice_gets_no_more_effects_than_the_nominal_rate() -> None:
    imgs = SETS["photos"](200, seed=0)
    values = describe.property_values(imgs)
    maps = edge_maps(imgs)
    hits_p = hits_r = tests_p = tests_r = 0
    for seed in range(10):
        members = np.random.default_rng(seed).choice(len(imgs), 50, replace=False)
        d = describe.property_effects(values, members)
        for lo, hi in d.details["ci"].values():
            if lo == hi == 0:  # a constant property (every image is 64 × 64): no test
                continue
            tests_p += 1
            hits_p += lo > 0 or hi < 0
        loc = describe.evidence_location(maps, members, n_boot=500, random_state=seed)
        for lo, hi in loc.details["ci"].values():
            tests_r += 1
            hits_r += lo > 0 or hi < 0
    # nominal 5 %; 8 properties × 10 seeds and 10 regions × 10 seeds
    assert tests_p == 80 and hits_p / tests_p <= 0.1, hits_p
    assert hits_r / tests_r <= 0.1, hits_r


def test_properties_of_a_blank_image_are_finite_and_resolution_is_the_files(
    tmp_path: Path,
) -> None:
    blank = compute_properties(np.zeros((20, 30, 3), dtype=np.uint8))
    assert np.isfinite(blank).all() and len(blank) == len(PROPERTY_NAMES)
    assert blank[PROPERTY_NAMES.index("aspect ratio")] == pytest.approx(1.5)
    # a big JPEG decoded at reduced scale still reports the file's own size
    from faultlens.data.decode import decode_image

    path = tmp_path / "big.jpg"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (800, 1200, 3), dtype=np.uint8)).save(path)
    img = decode_image(path, min_size=100)
    assert max(img.size) < 1200  # drafted
    v = compute_properties(img)
    assert v[PROPERTY_NAMES.index("resolution")] == pytest.approx(np.sqrt(800 * 1200), rel=1e-4)
    assert v[PROPERTY_NAMES.index("aspect ratio")] == pytest.approx(1.5, rel=1e-4)


def test_the_properties_model_runs_in_the_decoding_pass(tmp_path: Path) -> None:
    from faultlens.data.sources import ArraySource
    from faultlens.models.properties import ImageProperties, property_columns
    from faultlens.models.runner import run_models
    from faultlens.store import ArtifactStore

    imgs, members = planted_set("digits", "darker", seed=0, n=40)
    u8 = (imgs * 255).round().astype(np.uint8)
    src = ArraySource(u8, np.zeros(len(u8), dtype=int), class_names=["digit"])
    model = ImageProperties()
    res = run_models(src, {"properties": model}, store=ArtifactStore(tmp_path), progress=False)
    vals = res.outputs["properties"]
    assert vals.shape == (40, len(PROPERTY_NAMES)) and np.isfinite(vals).all()
    np.testing.assert_allclose(vals[3], compute_properties(u8[3]), rtol=1e-5)
    cols = property_columns(vals)
    assert list(cols) == [describe.PROPERTY_COLUMNS[p] for p in PROPERTY_NAMES]
    # the table's columns feed the describer as they are
    d = describe.property_effects(pd.DataFrame(cols), members)
    assert d.terms[0][0] == "brightness"
    again = run_models(src, {"properties": model}, store=ArtifactStore(tmp_path), progress=False)
    assert again.computed_shards["properties"] == []  # cached like any model's outputs


# --------------------------------------------------------------------------- where the model looks


@pytest.mark.parametrize("name", sorted(SETS))
def test_the_stamped_region_ranks_first(name: str) -> None:
    for region in STAMP_CELLS:
        imgs, members = planted_set(name, f"stamp:{region}", seed=2, n=N)
        d = describe.evidence_location(edge_maps(imgs), members)
        assert d.terms[0][0] == region, (name, region, d.terms[:3])
        assert d.terms[0][1] > 0
        assert d.details["ci"][region][0] > 0
        pics = d.details["pictures"]
        assert set(pics) == {"members", "reference", "difference"}
        assert all(p.startswith(b"\x89PNG") for p in pics.values())


def test_region_masks_and_bad_maps() -> None:
    masks = describe.region_masks((24, 24))
    assert masks.shape == (10, 24, 24)
    assert masks[:9].sum(0).max() == 1 and masks[:9].sum() == 24 * 24  # the cells tile the grid
    assert masks[9].sum() == 24 * 24 - 18 * 18  # the border: 3 px = one eighth
    with pytest.raises(ValueError, match="negative"):
        describe.evidence_location(-np.ones((4, 5, 5)), [0, 1])
    with pytest.raises(ValueError, match="row 9"):
        describe.evidence_location(np.ones((4, 5, 5)), [0, 9])
    with pytest.raises(ValueError, match=r"\(n_images, H, W\)"):
        describe.evidence_location(np.ones((4, 5)), [0])


# --------------------------------------------------------------------------- user's columns


def test_columns_find_the_over_represented_value_and_the_shift() -> None:
    rng = np.random.default_rng(0)
    n = 600
    members = np.arange(100)
    site = rng.choice(np.array(["a", "b", "c"], dtype=object), n)
    site[:100] = np.where(rng.random(100) < 0.7, "scanner-2", site[:100])
    age = rng.normal(50, 10, n)
    age[:100] += 8
    noise = rng.normal(0, 1, n)
    t = pd.DataFrame({"site": site, "age": age, "noise": noise, "flag": rng.random(n) < 0.5})
    d = describe.columns(t, members)
    top = d.top(2)
    assert set(top) == {"site = scanner-2", "age"}
    info = d.details["terms"]["site = scanner-2"]
    assert (
        info["lift"][1] > 1
        and info["words"] == "site = scanner-2: 69% of the slice vs 0% (only in the slice)"
    )
    assert d.details["terms"]["age"]["estimate"] > 0.5
    assert not any(x.startswith(("noise", "flag")) for x in d.top(10))
    hits = 0  # control: random members get (almost) nothing
    for seed in range(10):
        ctrl = np.random.default_rng(seed).choice(n, 100, replace=False)
        hits += len(describe.columns(t.iloc[:, 2:], ctrl).terms)
    assert hits <= 2
    with pytest.raises(TypeError, match="DataFrame"):
        describe.columns(np.zeros((3, 2)), [0])


# --------------------------------------------------------------------------- concepts


def test_a_concept_from_20_examples_is_significant_for_its_slice_only() -> None:
    from faultlens.models.embedders import EfficientNetLiteEmbedder

    rng = np.random.default_rng(0)
    imgs = SETS["digits"](260, seed=0)
    cue = np.zeros(len(imgs), dtype=bool)
    cue[:60] = True  # the slice: digits with a stamp in the top-right cell
    examples = [stamp(x, STAMP_CELLS["top-right"]) for x in imgs[200:220]]  # 20 other digits
    for i in np.flatnonzero(cue):
        imgs[i] = stamp(imgs[i], STAMP_CELLS["top-right"])
    emb = EfficientNetLiteEmbedder(64, device="cpu")
    to_u8 = lambda a: [(x * 255).round().astype(np.uint8) for x in a]  # noqa: E731
    Z = emb(to_u8(imgs[:200]))[:, :1280]
    concept = describe.ConceptFromExamples(random_state=0, n_random=60).fit(
        emb(to_u8(examples))[:, :1280]
    )
    planted = concept.test(Z, np.arange(60))
    assert planted["score"] > 0.65 and planted["p_value"] < 0.05, planted
    assert planted["effect"] > 0 and planted["ci"][0] > 0
    control = concept.test(Z, 60 + rng.choice(140, 40, replace=False), np.arange(60, 200))
    assert control["p_value"] > 0.05, control["score"]
    with pytest.raises(ValueError, match="like the concept"):
        concept.test(Z[:, :10], np.arange(5))


# --------------------------------------------------------------------------- tags and text


def test_tags_without_enrichment_are_not_shown() -> None:
    rng = np.random.default_rng(0)
    L = rng.normal(0, 2, (400, 1000))
    d = describe.imagenet_tags(np.arange(60), np.arange(60, 400), L)
    assert d.terms == [] and "no ImageNet tag is enriched" in d.details["note"]
    L[:60, 967] += 6  # espresso, planted on the members
    d = describe.imagenet_tags(np.arange(60), np.arange(60, 400), L)
    assert d.top(1) == ["espresso"] and d.details["q"]["espresso"] < 0.05
    gen = d.details["generalisation"]["espresso"]
    assert gen["selected_on_half"] and gen["precision"] > gen["base_rate"] + 0.5
    # describe_members says so in its notes
    labels = np.zeros(400, dtype=int)
    correct = np.ones(400, dtype=bool)
    descs, notes = describe.describe_members(
        np.arange(60),
        labels=labels,
        correct=correct,
        imagenet_logits=rng.normal(0, 2, (400, 1000)),
    )
    assert descs[0].terms == [] and any("no ImageNet tag is enriched" in n for n in notes)


def test_phrases_carry_a_held_out_precision() -> None:
    from faultlens.analysis import evaluate

    rng = np.random.default_rng(0)
    Z, A = evaluate.synthetic_embeddings(600, dim=64, n_attributes=5, seed=0)
    dirs = np.stack([Z[A[:, j]].mean(0) - Z[~A[:, j]].mean(0) for j in range(5)])
    T = dirs + rng.normal(0, 0.3, dirs.shape)
    names = [f"attribute {j}" for j in range(5)]
    d = describe.rank_phrases(np.flatnonzero(A[:, 2]), np.flatnonzero(~A[:, 2]), Z, T, names)
    gen = d.details["generalisation"]
    assert d.top(1) == ["attribute 2"] and gen["attribute 2"]["selected_on_half"]
    assert gen["attribute 2"]["precision"] > gen["attribute 2"]["base_rate"] + 0.3


# --------------------------------------------------------------------------- the summary


def test_describe_members_ranks_every_finding_into_one_sentence() -> None:
    imgs, members = planted_set("photos", "stamp:top-left", seed=0, n=N)
    imgs[members] = imgs[members] * 0.6  # and darker
    n = len(imgs)
    labels = np.zeros(n, dtype=int)
    correct = np.ones(n, dtype=bool)
    correct[members] = False
    table = pd.DataFrame(
        {
            "label": labels,
            "label_name": "Coat",
            "pred_name": np.where(correct, "Coat", "Shirt"),
            "camera": np.where(np.isin(np.arange(n), members), "old", "new"),
        }
    )
    descs, notes = describe.describe_members(
        members,
        labels=labels,
        correct=correct,
        images=imgs.__getitem__,
        maps=edge_maps(imgs),
        table=table,
        reference=np.setdiff1d(np.arange(n), members),
    )
    s = descs[0]
    assert s.source == "summary"
    sentence = s.details["sentence"]
    assert sentence.startswith("Coat read as Shirt · ")
    sources = {p["source"] for p in s.details["parts"]}
    assert {"image properties", "columns"} <= sources
    assert any(src.startswith("where the model looks") for src in sources)
    by_term = {p["term"]: p for p in s.details["parts"]}
    assert by_term["top-left"]["text"].startswith("the model's evidence sits top-left")
    assert by_term["brightness"]["text"].startswith("darker")
    ev = [p["evidence"] for p in s.details["parts"]]
    assert ev == sorted(ev, reverse=True)
    # each part points at the description that backs it
    named = {d.source: d for d in descs}
    for p in s.details["parts"]:
        assert p["term"] in dict(named[p["source"]].terms)
    assert not any("unavailable" in x for x in notes)


def test_without_offline_inputs_describe_members_is_as_before() -> None:
    descs, notes = describe.describe_members(
        np.arange(5),
        labels=np.zeros(20, dtype=int),
        correct=np.ones(20, dtype=bool),
        imagenet_logits=np.zeros((20, 1000)),
    )
    assert [d.source for d in descs] == ["tags (ImageNet classifier)"]
    assert any("no captioner" in x for x in notes)


# --------------------------------------------------------------------------- captions


_COCA_SCRIPT = """
import json, sys
sys.modules["transformers"] = None  # as if not installed, before anything imports it
import numpy as np, open_clip, torch
from PIL import Image
from faultlens.analysis import describe
open_clip.add_model_config(sys.argv[1])
rng = np.random.default_rng(0)
imgs = [Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)) for _ in range(3)]
out = {}
for generation in ("beam_search", "greedy"):
    torch.manual_seed(0)
    cap = describe.OpenClipCaptioner(
        "coca_faultlens_tiny2", pretrained=None, device="cpu", seq_len=8,
        generation=generation, num_beams=3,
    )
    # open_clip leaves some of a random CoCa's parameters as allocated (torch.empty): whatever
    # memory held, NaN at times. Give every parameter seeded values, so the decoding is tested.
    torch.manual_seed(0)
    with torch.no_grad():
        for param in cap.model.parameters():
            param.normal_(0.0, 0.02)
    caps = cap.caption(imgs)
    toks = cap.generate(torch.stack([cap.preprocess(i) for i in imgs]))
    out[generation] = {"caps": caps, "toks": toks, "min_len": cap.min_len, "seq_len": cap.seq_len}
print(json.dumps(out))
"""


def test_tiny_coca_captions_without_transformers(tmp_path: Path) -> None:
    """CoCa captions decode with faultlens's own beam search and greedy loops, in a process where
    ``transformers`` cannot be imported at all (a fresh interpreter, so no earlier import of it
    lingers), on a tiny CoCa whose every parameter is seeded."""
    import json
    import subprocess

    from tests.test_slices import TINY_COCA

    (tmp_path / "coca_faultlens_tiny2.json").write_text(json.dumps(TINY_COCA))
    res = subprocess.run(
        [sys.executable, "-c", _COCA_SCRIPT, str(tmp_path)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    for run in out.values():
        caps, toks = run["caps"], run["toks"]
        assert len(caps) == 3 and all(isinstance(c, str) for c in caps)  # random weights
        assert all(run["min_len"] - 1 <= len(t) <= run["seq_len"] - 1 for t in toks), toks
        assert all(49407 not in t[:-1] for t in toks)
    with pytest.raises(ValueError, match="beam_search"):
        describe.OpenClipCaptioner("coca_faultlens_tiny2", pretrained=None, generation="top_k")


# --------------------------------------------------------------------------- the demo


DEMO = os.environ.get("FAULTLENS_DEMO_ANALYSIS", "/work/democache/demo-analysis")


@pytest.mark.slow
@pytest.mark.skipif(not Path(DEMO).is_dir(), reason="no demo analysis built")
def test_demo_logo_slices_name_the_corner_and_small_sneakers_name_size(demo_cache: Path) -> None:
    import faultlens
    from faultlens.analysis import spurious as sp
    from faultlens.data import demo as demo_data
    from faultlens.models.demo_cnn import to_tensor, trained_cnn
    from faultlens.store import ArtifactStore

    a = faultlens.load(DEMO)
    t = a.table
    cached = Path(DEMO).parent / "models"  # the demo's trained CNN, when built in this cache
    if cached.is_dir():
        shutil.copytree(cached, demo_cache / "models", dirs_exist_ok=True)
    tr = demo_data.load_spurious_fashion_mnist()["train"]
    model = trained_cnn(tr.images, tr.labels, store=ArtifactStore(demo_cache), progress=False)
    group = t["planted_group"].to_numpy()
    labels, correct = t["label"].to_numpy(), t["correct"].to_numpy()
    rows = np.flatnonzero(np.isin(t["label"], [0, 2, 4, 6, 7]))
    x = to_tensor(np.stack([np.asarray(a.image(int(r)).convert("L")) for r in rows]))
    maps = np.zeros((len(t), 28, 28), dtype=np.float32)
    maps[rows] = sp.grad_cam(model, "features.7", x)
    props = np.zeros((len(t), len(PROPERTY_NAMES)), dtype=np.float32)
    props[rows] = describe.property_values(a.image, rows)
    for name in ("top_with_logo", "shirt_without_logo", "small_sneaker"):
        members = np.flatnonzero((group == name) & ~correct)
        cls = np.unique(labels[members])
        ref = np.flatnonzero(np.isin(labels, cls) & correct & (group == "none"))
        loc = describe.evidence_location(maps, members, ref)
        pr = describe.property_effects(props, members, ref)
        if name == "small_sneaker":
            assert pr.terms[0][0] == "object size" and pr.terms[0][1] < 0, pr.terms[:3]
        else:
            cells = [r for r, _ in loc.terms if r != "border"]  # largest first
            corner = cells[0] if name == "top_with_logo" else cells[-1]
            assert corner == "top-left", loc.terms


@pytest.mark.slow
@pytest.mark.skipif(not Path(DEMO).is_dir(), reason="no demo analysis built")
def test_a_loaded_demo_gets_its_cnn_back_and_says_where_it_looks() -> None:
    """``faultlens.load`` of the demo re-attaches the CNN cached beside it, so a description made
    after loading (as the Quickstart does) shows where the model looks, by default."""
    import faultlens

    a = faultlens.load(DEMO)
    if "cnn_key" not in a.meta.get("demo", {}):
        pytest.skip("this demo analysis was built before the demo recorded its CNN's key")
    assert a.classifier is not None
    t = a.table
    rows = np.flatnonzero((t["planted_group"] == "top_with_logo").to_numpy() & ~t["correct"])
    descs, _notes = a.describe(rows)
    looks = [d for d in descs if d.source.startswith("where the model looks")]
    assert looks, [d.source for d in descs]
    assert "top-left" in " ".join(str(term) for term, _score in looks[0].terms[:2])  # the logo
