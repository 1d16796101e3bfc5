"""What backs a slice's description: the rows behind each summary part (planted truth), the
where-the-model-looks maps Analysis.describe takes from its classifier by default, and the
Explorer's evidence messages (pictures as PNG buffers, a part's click selecting its rows)."""

from __future__ import annotations

import html
import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from faultlens.analysis import describe
from faultlens.analysis.describe.maps import evidence_layer, map_budget, model_maps
from faultlens.analysis.describe.summary import describe_members, header_rows
from faultlens.analysis.slices import Slice
from faultlens.render.html import evidence_pictures
from faultlens.ui.evidence import part_rows, summary_of, summary_parts
from tests.planted_evidence import StampNet, planted

# --------------------------------------------------------------------------- rows behind terms


def test_column_rows_are_the_planted_carriers() -> None:
    rng = np.random.default_rng(1)
    n = 600
    members = np.arange(100)
    site = np.where(rng.random(n) < 0.05, "B", "A").astype(object)
    carriers_b = members[rng.random(100) < 0.6]  # the value is planted on these members only
    site[members] = "A"
    site[carriers_b] = "B"
    shifted = members[::2]  # a strong shift planted on half the members
    x = rng.normal(0, 1, n)
    x[shifted] += 6.0
    d = describe.columns(pd.DataFrame({"site": site, "x": x}), members)
    terms = d.details["terms"]
    np.testing.assert_array_equal(np.sort(terms["site = B"]["rows"]), np.sort(carriers_b))
    rows = terms["x"]["rows"]
    assert set(shifted) <= set(rows)  # every shifted member carries the shift
    others = np.setdiff1d(members, shifted)
    # unshifted members land above the reference's 90th percentile by chance only (about 10 %)
    assert len(np.intersect1d(rows, others)) / len(others) < 0.25
    assert set(rows) <= set(members)


def test_region_rows_are_the_stamped_members() -> None:
    rng = np.random.default_rng(2)
    maps = rng.random((200, 12, 12))
    members = np.arange(60)
    stamped = members[:25]
    maps[stamped, :3, :3] += 20.0  # evidence planted top-left on 25 of the 60 members
    d = describe.evidence_location(maps, members, np.arange(60, 200))
    assert d.terms[0][0] == "top-left"
    rows = d.details["rows"]["top-left"]
    assert set(stamped) <= set(rows)
    # an unstamped member passes the reference's 90th percentile by chance only (about 10 %)
    assert len(np.setdiff1d(rows, stamped)) / 35 < 0.25
    lost = d.terms[-1][0]  # where the stamped members' evidence is missing: mostly them
    assert set(stamped) <= set(d.details["rows"][lost])


def test_tag_and_concept_rows_are_the_planted_carriers() -> None:
    rng = np.random.default_rng(3)
    n, c = 400, 50
    logits = rng.normal(0, 1, (n, c))
    members = np.arange(80)
    tagged = members[:50]
    logits[tagged, 7] += 10.0
    names = [f"label {j}" for j in range(c)]
    d = describe.imagenet_tags(members, np.arange(80, n), logits, names)
    assert d.terms[0][0] == "label 7"
    rows = d.details["rows"]["label 7"]
    assert set(tagged) <= set(rows)
    top5 = np.argsort(-logits[members], axis=1)[:, :5]
    np.testing.assert_array_equal(rows, members[(top5 == 7).any(axis=1)])  # and chance holders

    Z = rng.normal(0, 1, (n, 16))
    carry = members[:40]
    Z[carry, 0] += 4.0
    concept = Z[carry][:20] + rng.normal(0, 0.1, (20, 16))
    res = describe.ConceptFromExamples(random_state=0, n_random=30).fit(concept).test(Z, members)
    assert res["score"] > 0.5
    assert set(carry) <= set(res["rows"])
    assert len(np.intersect1d(res["rows"], members[40:])) < 12  # about one in ten by chance


def test_phrase_rows_are_the_members_that_look_like_it() -> None:
    rng = np.random.default_rng(4)
    n, dim = 500, 24
    T = rng.normal(0, 1, (6, dim))  # six phrases' text embeddings
    Z = rng.normal(0, 1, (n, dim))
    members = np.arange(100)
    carry = members[:45]
    Z[carry] += 4.0 * T[2] / np.linalg.norm(T[2])  # 45 members look like phrase 2 (+4 SD)
    phrases = [f"phrase {j}" for j in range(6)]
    d = describe.rank_phrases(members, np.arange(100, n), Z, T, phrases, k=3)
    assert d.terms[0][0] == "phrase 2"
    rows = d.details["rows"]["phrase 2"]
    assert set(carry) <= set(rows)
    assert len(np.setdiff1d(rows, carry)) / 55 < 0.25  # others pass by chance only (about 10 %)
    assert set(rows) <= set(members)


def test_header_rows_are_the_members_read_as_the_wrong_class() -> None:
    members = np.array([10, 11, 12, 13, 14, 15])
    labels = ["Coat", "Coat", "Coat", "Pullover", "Coat", "Coat"]
    preds = ["Shirt", "Shirt", "Coat", "Shirt", "Shirt", "Bag"]
    assert describe.summary.slice_header(labels, preds).startswith("Coat, Pullover read as Shirt")
    np.testing.assert_array_equal(header_rows(members, labels, preds), [10, 11, 13, 14])
    # no dominant wrong class: the main class's members
    np.testing.assert_array_equal(header_rows(members, labels, labels), [10, 11, 12, 14, 15])


def test_summary_parts_carry_rows_and_part_rows_gives_them() -> None:
    analysis, truth = planted()
    descs, _ = analysis.describe(truth["stamped"])
    parts = summary_parts(descs)
    assert parts[0]["term"] == "header" and parts[0]["text"] == "coat read as shirt"
    by_term = {p["term"]: p for p in parts}
    assert by_term["top-left"]["n"] == 40 and by_term["top-left"]["among"] == 40
    assert by_term["site = scanner-B"]["among"] is None  # every member examined
    rows, text = part_rows(descs, by_term["site = scanner-B"]["part"])
    np.testing.assert_array_equal(rows, truth["site_b"])
    assert text.startswith("site = scanner-B")
    rows, _ = part_rows(descs, by_term["top-left"]["part"])
    np.testing.assert_array_equal(rows, truth["stamped"])
    with pytest.raises(IndexError, match="no summary part 99"):
        part_rows(descs, 99)
    summary = descs[0]
    summary.details["parts"][0]["rows"] = None  # a part that cannot say which rows
    with pytest.raises(ValueError, match="does not say which images"):
        part_rows(descs, 1)
    assert summary_parts(descs)[1]["n"] is None


# --------------------------------------------------------------------------- maps by default


def test_describe_takes_grad_cam_maps_from_the_classifier_by_default() -> None:
    analysis, truth = planted()
    descs, _ = analysis.describe(truth["stamped"])
    where = [d for d in descs if d.source.startswith("where the model looks")]
    assert [d.source for d in where] == ["where the model looks (Grad-CAM at features)"]
    assert where[0].terms[0][0] == "top-left"
    assert set(where[0].details["pictures"]) == {"members", "reference", "difference"}
    descs, _ = analysis.describe(truth["stamped"], maps=None)  # switched off
    assert not any(d.source.startswith("where the model looks") for d in descs)
    analysis.classifier = None  # e.g. after load(): no model, no maps, no error
    descs, _notes = analysis.describe(truth["stamped"])
    assert not any(d.source.startswith("where the model looks") for d in descs)
    with pytest.raises(ValueError, match="maps must be 'auto'"):
        analysis.describe(truth["stamped"], maps="gradcam")


def test_maps_are_computed_for_at_most_max_maps_images_per_group() -> None:
    analysis, _ = planted()
    asked: list[int] = []
    inner = model_maps(analysis.classifier, analysis.image)

    def maps(rows: np.ndarray) -> np.ndarray:
        asked.append(len(rows))
        return inner(rows)

    members = np.flatnonzero(analysis.table["label"].to_numpy() == 1)[:150]
    descs, _ = describe_members(
        members,
        labels=analysis.table["label"].to_numpy(),
        correct=analysis.table["correct"].to_numpy(),
        maps=maps,
        max_maps=30,
    )
    assert asked == [60]  # 30 members + 30 reference images, one call
    where = next(d for d in descs if d.source.startswith("where the model looks"))
    assert where.details["n"] == (30, 30)
    assert set(where.details["rows"]["center"]) <= set(members)  # table rows, not positions


def test_map_budget_caps_a_slow_model_and_maps_are_cached() -> None:
    analysis, _ = planted()
    inner = model_maps(analysis.classifier, analysis.image)
    now = [0.0]  # a fake clock: the "slow model" advances it 50 ms an image

    def slow(rows: np.ndarray) -> np.ndarray:
        now[0] += 0.05 * len(rows)
        return inner(rows)

    def budget(maps, seconds: float) -> int:
        return map_budget(maps, np.arange(5), seconds=seconds, most=64, clock=lambda: now[0])

    assert budget(slow, 2.0) == 20  # 2 s / 50 ms an image / 2 groups
    assert budget(slow, 0.1) == 16  # never under 16
    assert budget(inner, 5.0) == 64  # a model that takes no time: all of them
    # rows already mapped come from the cache: only the new row's image is read and mapped
    loaded: list[int] = []
    cached = model_maps(analysis.classifier, lambda r: loaded.append(r) or analysis.image(r))
    first = cached(np.array([7, 3, 7]))
    np.testing.assert_array_equal(first[0], first[2])
    assert loaded == [7, 3]
    again = cached(np.array([3, 7, 9]))
    assert loaded == [7, 3, 9]
    np.testing.assert_array_equal(again[1], first[0])


def test_evidence_layer_is_the_last_spatial_layer() -> None:
    import torch

    net = StampNet()
    assert evidence_layer(net, torch.zeros(1, 16, 16)) == "features"
    head_only = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    with pytest.raises(ValueError, match="no layer with a spatial"):
        evidence_layer(head_only, torch.zeros(1, 2, 2))
    with pytest.raises(TypeError, match="cannot give maps"):
        model_maps(object(), lambda r: None)


# --------------------------------------------------------------------------- the Explorer's messages


@pytest.fixture
def explorer_on_planted():
    from faultlens.ui.explorer import Explorer

    analysis, truth = planted()
    ex = Explorer(analysis)
    sent: list[tuple[dict, list]] = []
    ex.send = lambda content, buffers=None: sent.append((content, buffers or []))  # type: ignore[method-assign]
    found = Slice("stamped coats", "planted", (np.isin(np.arange(len(analysis)), truth["stamped"])).astype(float),
                  truth["stamped"])  # fmt: skip
    plain = Slice("plain shirts", "planted", np.zeros(len(analysis)), np.arange(200, 230))
    plain.descriptions = {"items": [], "notes": ["where the model looks: unavailable (no model)"]}
    ex.set_discovered([found, plain], describe=True)
    return ex, sent, truth


def test_slice_evidence_serves_captioned_pngs(explorer_on_planted) -> None:
    ex, sent, _ = explorer_on_planted
    row = ex.discovered[0]
    assert row["summary"][0]["text"] == "coat read as shirt"
    assert all(p["n"] is None or p["n"] > 0 for p in row["summary"])
    ex._on_custom_msg(ex, {"type": "slice_evidence", "index": 0}, [])
    reply, buffers = sent[-1]
    assert reply["type"] == "slice_evidence" and reply["index"] == 0
    assert [it["kind"] for it in reply["items"]] == ["members", "reference", "difference"]
    assert len(buffers) == 3
    for it, png in zip(reply["items"], buffers, strict=True):
        assert it["caption"] and it["source"].startswith("where the model looks")
        with Image.open(io.BytesIO(png)) as im:
            assert im.format == "PNG" and min(im.size) >= 16
    assert "40 members" in reply["items"][0]["caption"]
    # the members' mean map is brightest top-left, where the stamp is
    with Image.open(io.BytesIO(buffers[0])) as im:
        lum = np.asarray(im.convert("L"), dtype=float)
    h, w = lum.shape
    assert lum[: h // 3, : w // 3].mean() > 2 * lum[h // 3 :, w // 3 :].mean()
    ex._on_custom_msg(ex, {"type": "slice_evidence", "index": 1}, [])
    reply, buffers = sent[-1]
    assert buffers == [] and reply["items"] == [] and "unavailable (no model)" in reply["note"]
    assert evidence_pictures([]) == []


def test_clicking_a_part_selects_the_rows_that_carry_it(explorer_on_planted) -> None:
    ex, _, truth = explorer_on_planted
    ex.select_discovered(0)
    parts = {p["term"]: p for p in ex.discovered[0]["summary"]}
    ex._on_custom_msg(
        ex, {"type": "select_part", "index": 0, "part": parts["site = scanner-B"]["part"]}, []
    )
    np.testing.assert_array_equal(ex.selection, truth["site_b"])
    assert ex.active_slice == 0  # the panel stays on the slice
    assert ex.status.startswith("selected 30 images of stamped coats: site = scanner-B")
    # the selection's own description: parts clickable there too
    ex.describe_selection(rows=truth["stamped"])
    item = next(i for i in ex.descriptions["items"] if i["source"] == "summary")
    top = next(p for p in item["parts"] if p["term"] == "top-left")
    ex._on_custom_msg(ex, {"type": "select_part", "part": top["part"]}, [])
    np.testing.assert_array_equal(ex.selection, truth["stamped"])
    before = ex.selection.copy()
    ex._on_custom_msg(ex, {"type": "select_part", "index": 0, "part": 42}, [])
    assert ex.status.startswith("select_part: ") and "no summary part 42" in ex.status
    np.testing.assert_array_equal(ex.selection, before)


# --------------------------------------------------------------------------- static HTML and report


def _figures(html: str) -> list[tuple[bytes, str]]:
    """The (PNG bytes, caption) of every evidence figure in ``html``."""
    import base64
    import re

    found = re.findall(
        r"<figure><img src='data:image/png;base64,([^']+)'[^>]*/><figcaption>([^<]*)</figcaption>",
        html,
    )
    return [(base64.b64decode(b64), cap) for b64, cap in found]


def test_report_and_static_copy_show_the_summary_and_the_pictures(
    explorer_on_planted, tmp_path
) -> None:
    from faultlens.report import write_report

    ex, _, _truth = explorer_on_planted
    found = ex.discovered_slices
    found[0].name = "stamped <b>coats</b>"  # a user string: shown as text, never as markup
    out = write_report(ex.analysis, tmp_path / "report.html", slices=found, charts=False)
    page = out.read_text(encoding="utf-8")
    sentence = summary_of(found[0].descriptions).details["sentence"]
    assert sentence.startswith("coat read as shirt")
    assert f"<p class='summary'><b>{html.escape(sentence)}</b></p>" in page
    assert "stamped &lt;b&gt;coats&lt;/b&gt;" in page and "<b>coats</b>" not in page
    figures = _figures(page)
    # one slice has maps (members, reference, difference); the other says why it has none
    assert [cap.split(":")[0] for _, cap in figures] == ["slice", "reference", "difference"]
    assert "40 members" in figures[0][1]
    assert "where the model looks: unavailable (no model)" in page
    with Image.open(io.BytesIO(figures[0][0])) as im:  # the stamp's corner is the bright one
        lum = np.asarray(im.convert("L"), dtype=float)
    h, w = lum.shape
    assert lum[: h // 3, : w // 3].mean() > 2 * lum[h // 3 :, w // 3 :].mean()
    # the Explorer's static copy (what nbconvert keeps) shows the same summary and pictures
    bundle = ex._repr_mimebundle_()
    static = bundle[0]["text/html"] if isinstance(bundle, tuple) else bundle["text/html"]
    assert html.escape(sentence) in static
    assert [c for _, c in _figures(static)] == [c for _, c in figures]
