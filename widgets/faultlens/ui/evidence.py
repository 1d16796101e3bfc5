"""What backs a description in the Explorer's slice panel: the pictures its describers made
(:func:`faultlens.render.html.evidence_pictures`, served as PNG buffers on request) and the rows
behind each part of its one-sentence summary (selected on a click). Widget-free, except
:func:`evidence_commands`, which binds both to a panel's messages."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from faultlens.render.html import description_items, evidence_pictures

#: Summary parts shown in the panel: the header and this many findings, strongest first.
SHOWN_PARTS = 5


def summary_of(descriptions: Any) -> Any:
    """The ``"summary"`` Description among ``descriptions`` (a slice's ``descriptions`` or a
    list), or None."""
    for d in description_items(descriptions):
        if d.source == "summary":
            return d
    return None


def summary_parts(descriptions: Any, k: int = SHOWN_PARTS) -> list[dict[str, Any]]:
    """The summary's parts as the panel shows them: the header, then the ``k`` strongest
    findings; each ``{part, text, source, term, n, among}`` with ``n`` the number of rows that
    carry it (None: the description cannot say which rows, so the part is not clickable) and
    ``among`` the number of members examined when only a sample was (else None). ``part`` is
    the number :func:`part_rows` takes."""
    s = summary_of(descriptions)
    if s is None:
        return []
    det = s.details or {}
    out = []
    if det.get("header"):
        rows = det.get("header_rows")
        out.append({"part": 0, "text": str(det["header"]), "source": "summary", "term": "header",
                    "n": None if rows is None else len(rows), "among": None})  # fmt: skip
    for i, p in enumerate(det.get("parts", [])[:k]):
        rows = p.get("rows")
        out.append({"part": i + 1, "text": str(p["text"]), "source": str(p["source"]),
                    "term": str(p["term"]), "n": None if rows is None else len(rows),
                    "among": p.get("among")})  # fmt: skip
    return out


def part_rows(descriptions: Any, part: int) -> tuple[np.ndarray, str]:
    """The rows that carry summary part ``part`` (0: the header; i: the i-th finding) and its
    text. Raises a ValueError naming the part when the description cannot say which rows."""
    s = summary_of(descriptions)
    if s is None:
        msg = "this description has no summary to select from (describe it again)"
        raise ValueError(msg)
    det = s.details or {}
    parts = det.get("parts", [])
    part = int(part)
    if part == 0:
        rows, text = det.get("header_rows"), str(det.get("header") or "")
    elif 1 <= part <= len(parts):
        rows, text = parts[part - 1].get("rows"), str(parts[part - 1]["text"])
    else:
        msg = f"no summary part {part}: there are {len(parts) + 1} (0 is the header)"
        raise IndexError(msg)
    if rows is None:
        msg = f"{text!r} does not say which images carry it"
        raise ValueError(msg)
    return np.unique(np.asarray(rows, dtype=np.int64)), text


def evidence_reply(index: int, descriptions: Any, notes: Sequence[str] = ()) -> tuple[dict, list]:
    """The answer to ``{type: "slice_evidence", index}``: one buffer per picture, with its
    caption and source; ``note`` says why there are none."""
    pics = evidence_pictures(descriptions)
    note = ""
    if not pics:
        why = [n for n in notes if "where the model looks" in n]
        note = (
            why[0]
            if why
            else "no pictures: where the model looks needs the analysis's classifier "
            "(analysis.classifier = faultlens.Classifier(model, transform)) or maps="
        )
    reply = {
        "type": "slice_evidence",
        "index": int(index),
        "items": [{k: p[k] for k in ("source", "kind", "caption")} for p in pics],
        "note": note,
    }
    return reply, [p["png"] for p in pics]


def evidence_commands(panel: Any) -> dict[str, Callable[[dict], Any]]:
    """The panel's evidence messages: ``slice_evidence`` (the pictures of discovered slice
    ``index``) and ``select_part`` (select the rows behind summary part ``part`` of discovered
    slice ``index``, or of the selection's description when ``index`` is absent or -1)."""
    from faultlens.ui.state import find_discovered

    def send_evidence(c: dict) -> None:
        sl = find_discovered(panel.discovered_slices, int(c["index"]))
        desc = sl.descriptions or {}
        notes = desc.get("notes", []) if isinstance(desc, dict) else []
        reply, buffers = evidence_reply(int(c["index"]), desc, notes)
        panel.send(reply, buffers=buffers)

    def select_part(c: dict) -> None:
        index = int(c.get("index", -1))
        if index >= 0:
            sl = find_discovered(panel.discovered_slices, index)
            rows, text = part_rows(sl.descriptions, int(c["part"]))
            panel._push_selection(rows, source="discovered")
            panel.active_slice = index
            where = f"of {sl.name}"
        else:
            last = panel.last_description
            if last is None:
                msg = "nothing described yet"
                raise ValueError(msg)
            rows, text = part_rows(last[0], int(c["part"]))
            panel._push_selection(rows, source="part")
            where = "of the described images"
        panel.status = f"selected {len(rows)} images {where}: {text}"

    return {"slice_evidence": send_evidence, "select_part": select_part}
