"""Slice discovery: coherent groups of images where the classifier fails.

Each method is one :class:`Slicer` class in :data:`SLICERS` (``discover(..., method=name)``):

- ``"default"`` (:class:`DefaultSlicer`, used when ``method`` is None): the failure directions'
  pockets of errors within a class (scored on held-out folds) and the mixture's coherent groups,
  ranked together by how far their errors exceed the model's average, near-duplicates dropped,
  then the label-error slice — the best on the planted benchmarks;
- ``"mixture"``: Domino's error-aware Gaussian mixture (Eyuboglu et al., ICLR 2022) — a diagonal
  Gaussian mixture over PCA-reduced embeddings whose components also model the label and the
  prediction, weighted by γ and γ̂; k-means initialisation, components ranked by their errors;
- ``"failure_directions"``: per class, the images the failure-direction SVM flags (score ≤ 0),
  each item scored by SVMs fitted without it (cross-fitting);
- ``"label_errors"``: items whose label the classifier confidently contradicts (per-class
  thresholds, as in confident learning);
- ``"kmeans"``: k-means on the embeddings, clusters ranked by error count (a baseline);
- ``"confusion"``: confusion-matrix cells ``(y == t) · p̂[:, p]`` (a baseline).

A new method is a :class:`Slicer` subclass plus :func:`register`. Every slice carries a soft
membership per item, its members (most typical first), its stats, the method that found it, the
share of its members that look like label errors, and the slices it overlaps.
"""

from __future__ import annotations

import html
import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from faultlens.analysis.failure_directions import FailureDirections, cross_fitted_scores
from faultlens.analysis.mixture import ErrorAwareMixture, check_inputs
from faultlens.analysis.stats import group_stats


class SliceWarning(UserWarning):
    """Fewer slices than asked for could be found; the message says why."""


@dataclass
class Slice:
    """One discovered slice.

    ``name`` is built from the content: the dominant label (→ the dominant wrong prediction), the
    method and the slice's rank, e.g. ``"Shirt → T-shirt (mixture 2)"``. ``membership`` is (n,) in
    [0, 1]; ``indices`` are the members (membership ≥ ``threshold``, else the items with at least half
    the column's top membership) ordered most typical first; ``stats`` holds size, errors, error
    rate, its 95 % Wilson interval, lift over the overall error rate and the class mix.
    ``label_error_share`` is the share of members whose label the classifier confidently
    contradicts (:func:`likely_label_errors`): high means a noisy-label slice rather than a model
    failure. ``overlaps`` maps the names of earlier slices to the share of this slice's members
    they also hold (shares ≥ 0.25; near-duplicates are dropped).
    """

    name: str
    method: str
    membership: np.ndarray
    indices: np.ndarray
    stats: dict[str, Any] = field(default_factory=dict)
    descriptions: dict[str, Any] = field(default_factory=dict)
    label_error_share: float = math.nan
    overlaps: dict[str, float] = field(default_factory=dict)

    def __repr__(self) -> str:
        s = self.stats
        return (
            f"<Slice {self.name!r} ({self.method}): {len(self.indices)} images, error rate "
            f"{s.get('error_rate', float('nan')):.1%}, lift {s.get('lift', float('nan')):.2f}>"
        )

    def _repr_html_(self) -> str:
        """A card for notebooks and nbviewer: name, method, size, error rate with its interval,
        lift, class mix, likely label errors and overlaps; every name escaped."""
        s = self.stats

        def pct(v: Any) -> str:
            return "–" if v is None or not math.isfinite(float(v)) else f"{float(v):.1%}"

        mix = ", ".join(
            f"{html.escape(str(m['name']))} {int(m['n'])}" for m in (s.get("class_mix") or [])[:4]
        )
        over = ", ".join(f"{html.escape(k)} {v:.0%}" for k, v in self.overlaps.items())
        lift = s.get("lift")
        return (
            f"<div class='faultlens-slice'><b>{html.escape(self.name)}</b> "
            f"<span>(found by {html.escape(self.method)})</span>: {len(self.indices):,} images, "
            f"error rate {pct(s.get('error_rate'))} (95% CI {pct(s.get('ci_low'))}–"
            f"{pct(s.get('ci_high'))}), lift {'–' if lift is None else f'{lift:.2f}'}"
            f"<br>classes: {mix or '–'}; likely label errors: {pct(self.label_error_share)}"
            + (f"<br>overlaps: {over}" if over else "")
            + "</div>"
        )


def slice_stats(
    members: np.ndarray,
    correct: np.ndarray,
    labels: np.ndarray,
    class_names: list[str] | None = None,
) -> dict[str, Any]:
    """The slice's :func:`~faultlens.analysis.stats.group_stats` against every row: ``n``,
    ``errors``, ``error_rate`` with its Wilson CI, ``lift`` over the overall rate, ``class_mix``."""
    return group_stats(correct, members, labels=labels, class_names=class_names)


# --------------------------------------------------------------------------- label errors


def likely_label_errors(labels: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Items whose label the classifier confidently contradicts, and a soft score of it.

    As in confident learning: class j's threshold ``t_j`` is the mean probability of j over the
    items labelled j (the classifier's self-confidence on that class). An item is a likely label
    error when, among the classes whose probability reaches their threshold, the most probable is
    not its label. The score is ``max_{j ≠ y} (p_j − t_j)`` (> 0 for some flagged items, larger =
    more confident). Returns (flagged (n,) bool, score (n,) float).
    """
    y = np.asarray(labels).astype(np.int64)
    P = np.asarray(probs, dtype=np.float64)
    n, C = P.shape
    t = np.array([P[y == j, j].mean() if (y == j).any() else 1.0 for j in range(C)])
    above = np.where(t[None] <= P, P, -np.inf)
    best = above.argmax(axis=1)
    flagged = np.isfinite(above.max(axis=1)) & (best != y)
    margin = P - t[None]
    margin[np.arange(n), y] = -np.inf
    return flagged, margin.max(axis=1) if C > 1 else np.full(n, -np.inf)


# --------------------------------------------------------------------------- slicers


class Slicer:
    """One slice-discovery method. Subclasses set ``name`` and implement :meth:`memberships`;
    one with something to learn overrides :meth:`fit` (e.g. on a validation split) and its
    :meth:`memberships` then uses what was fitted.

    ``memberships(Z, y, P)`` returns a (n, m) soft membership matrix in [0, 1] with one column per
    candidate slice, best first by the method's own ranking, and the columns' names. ``discover``
    thresholds the columns, drops empty and duplicate ones and keeps the first ``n_slices``; so a
    slicer should offer more candidates than asked when it can.
    """

    name = "slicer"

    def __init__(self, n_slices: int = 5, *, random_state: int = 0, **options: Any) -> None:
        self.n_slices = n_slices
        self.random_state = random_state
        self.options = options
        self.fitted_ = False

    def fit(self, Z: np.ndarray, y: np.ndarray, P: np.ndarray) -> Slicer:
        self.fitted_ = True
        return self

    def memberships(
        self, Z: np.ndarray, y: np.ndarray, P: np.ndarray
    ) -> tuple[np.ndarray, list[str]]:
        raise NotImplementedError


#: Registered slice-discovery methods, by name.
SLICERS: dict[str, type[Slicer]] = {}
#: The method ``discover`` uses when ``method`` is None.
DEFAULT_METHOD = "default"


def register(cls: type[Slicer]) -> type[Slicer]:
    """Add a :class:`Slicer` subclass to :data:`SLICERS` under its ``name`` (usable as a decorator)."""
    SLICERS[cls.name] = cls
    return cls


def _rank_by_errors(M: np.ndarray, wrong: np.ndarray) -> np.ndarray:
    """Column order: most expected errors first, then the highest soft error rate."""
    errs = wrong @ M
    rate = errs / np.maximum(M.sum(axis=0), 1e-12)
    return np.lexsort((-rate, -np.round(errs, 6)))


@register
class MixtureSlicer(Slicer):
    """Domino's error-aware mixture (:class:`ErrorAwareMixture`); every component, ranked."""

    name = "mixture"

    def __init__(self, n_slices: int = 5, *, random_state: int = 0, model: Any = None, **options):
        super().__init__(n_slices, random_state=random_state, **options)
        self.model = model
        self.fitted_ = model is not None

    def fit(self, Z: np.ndarray, y: np.ndarray, P: np.ndarray) -> MixtureSlicer:
        self.model = ErrorAwareMixture(
            self.n_slices, random_state=self.random_state, **self.options
        ).fit(Z, y, P)
        self.fitted_ = True
        return self

    def memberships(self, Z, y, P):
        M = self.model.ranked_proba(Z, y, P)
        return M, [f"mixture-{int(k)}" for k in self.model.component_order_]


@register
class FailureDirectionSlicer(Slicer):
    """Per class, the failure-direction SVM's score as a membership (score ≤ 0 → ≥ 0.5).

    Scored on the items it was fitted on, a class's SVM can be trusted only where a hyperplane
    cannot split the class's items any way at all: in ``d`` dimensions a random labelling of
    ``n_c ≤ 2·d`` points is linearly separable with probability ≥ 1/2 (Cover, 1965), and the
    flagged set is then the class's errors themselves rather than the group behind them. Such
    classes (``cross_fit="auto"``; ``True``: every class, ``False``: none) are scored by SVMs
    fitted on the other folds
    (:func:`~faultlens.analysis.failure_directions.cross_fitted_scores`); items of other splits
    by the SVMs fitted on every item.
    """

    name = "failure_directions"

    def __init__(
        self,
        n_slices: int = 5,
        *,
        random_state: int = 0,
        model: Any = None,
        cross_fit: bool | str = "auto",
        folds: int = 2,
        **options,
    ):
        super().__init__(n_slices, random_state=random_state, **options)
        if cross_fit not in (True, False, "auto"):
            msg = f"cross_fit must be True, False or 'auto', got {cross_fit!r}"
            raise ValueError(msg)
        self.model = model
        self.cross_fit = cross_fit
        self.folds = int(folds)
        self.fitted_ = model is not None
        self._fit_data: tuple[np.ndarray, np.ndarray] | None = None

    def fit(self, Z, y, P) -> FailureDirectionSlicer:
        pred = P.argmax(axis=1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.model = FailureDirections(random_state=self.random_state, **self.options).fit(
                Z, y, pred
            )
            counts = np.bincount(y, minlength=P.shape[1])
            held = (
                np.ones(P.shape[1], bool)
                if self.cross_fit is True
                else (counts <= 2 * Z.shape[1]) & (self.cross_fit == "auto")
            )
            self.held_out_classes_ = np.flatnonzero(held & (counts > 0))
            self._fit_data = None
            if len(self.held_out_classes_):
                scores = cross_fitted_scores(
                    Z, y, pred, folds=self.folds, random_state=self.random_state, **self.options
                )
                scores[~np.isin(y, self.held_out_classes_)] = np.nan
                self._fit_data = (Z, scores)
        self.fitted_ = True
        return self

    def scores(self, Z: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Failure scores: held out (cross-fitted) for the items ``fit`` saw of the classes it
        could shatter, else the SVMs fitted on every item."""
        full = self.model.score(Z, y)
        if self._fit_data is not None and (
            self._fit_data[0] is Z
            or (self._fit_data[0].shape == Z.shape and np.array_equal(self._fit_data[0], Z))
        ):
            held_out = self._fit_data[1]
            return np.where(np.isfinite(held_out), held_out, full)
        return full

    def memberships(self, Z, y, P):
        score = self.scores(Z, y)
        cols, names = [], []
        for c in np.unique(y):
            sel = (y == c) & np.isfinite(score)
            if not sel.any():
                continue
            m = np.zeros(len(y))
            m[sel] = 1.0 / (1.0 + np.exp(np.clip(4.0 * score[sel], -50, 50)))
            cols.append(m)
            names.append(f"failure-direction-{int(c)}")
        M = np.stack(cols, axis=1) if cols else np.zeros((len(y), 0))
        # Classes whose errors the SVM predicts best first (cross-validated balanced accuracy: a
        # pocket of errors is predictable, errors spread at random are not), then by errors.
        cv = np.array([self.model.cv_score_.get(int(nm.rsplit("-", 1)[1]), 0.5) for nm in names])
        errs = (P.argmax(axis=1) != y).astype(float) @ M
        order = np.lexsort((-errs, -np.round(cv, 2)))
        return M[:, order], [names[k] for k in order]


@register
class LabelErrorSlicer(Slicer):
    """Items whose label the classifier confidently contradicts (:func:`likely_label_errors`), one
    column per labelled class with such items, then one over all classes."""

    name = "label_errors"

    def __init__(self, n_slices: int = 5, *, random_state: int = 0, scale: float = 0.05, **options):
        super().__init__(n_slices, random_state=random_state, **options)
        self.scale = scale

    def memberships(self, Z, y, P):
        _, score = likely_label_errors(y, P)
        m = 1.0 / (1.0 + np.exp(-np.clip(score / self.scale, -50, 50)))
        cols, names = [m], ["label-errors"]
        classes = np.unique(y)
        if len(classes) > 2:
            for c in classes:
                cols.append(np.where(y == c, m, 0.0))
                names.append(f"label-errors-{int(c)}")
        return np.stack(cols, axis=1), names


@register
class KMeansSlicer(Slicer):
    """k-means on the embeddings, clusters ranked by error count (a baseline)."""

    name = "kmeans"

    def memberships(self, Z, y, P):
        from sklearn.cluster import KMeans

        n = len(y)
        k = min(max(self.n_slices * 3, 8), n)
        km = KMeans(k, n_init=3, random_state=self.random_state).fit(Z)
        dist = km.transform(Z)
        M = np.zeros((n, k))
        for j in range(k):
            sel = km.labels_ == j
            d = dist[sel, j]
            M[sel, j] = 0.5 + 0.5 / (1.0 + d / (d.mean() + 1e-12))  # members ≥ 0.5, centre higher
        order = _rank_by_errors((M >= 0.5).astype(float), (P.argmax(axis=1) != y).astype(float))
        return M[:, order], [f"kmeans-{int(j)}" for j in order]


@register
class ConfusionSlicer(Slicer):
    """Confusion-matrix cells ``(y == t) · p̂[:, p]``, t ≠ p (a baseline)."""

    name = "confusion"

    def memberships(self, Z, y, P):
        C = P.shape[1]
        pairs = [(t, p) for t in range(C) for p in range(C) if t != p]
        M = np.stack([(y == t) * P[:, p] for t, p in pairs], axis=1)
        order = _rank_by_errors((M >= 0.5).astype(float), (P.argmax(axis=1) != y).astype(float))
        return M[:, order], [f"confusion-{pairs[k][0]}->{pairs[k][1]}" for k in order]


def error_z_scores(M: np.ndarray, wrong: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Per column: the binomial z-score of the errors among its members (membership ≥
    ``threshold``) against the overall error rate, ``(e − n·b) / sqrt(n·b·(1 − b))``; −inf for a
    column without members. Large = many more errors than the model's average predicts, weighing
    a slice's error rate and its size the way a significance test does."""
    H = (threshold <= M).astype(np.float64)
    n = H.sum(axis=0)
    e = wrong.astype(np.float64) @ H
    b = float(np.clip(wrong.mean(), 1e-6, 1 - 1e-6))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (e - n * b) / np.sqrt(n * b * (1 - b))
    return np.where(n > 0, z, -np.inf)


@register
class DefaultSlicer(Slicer):
    """The default: the failure directions' slices (pockets of errors within a class, scored on
    held-out folds) and the mixture's components (coherent groups) in one ranking, then the
    label-error slice.

    Candidates of the first two are ranked by :func:`error_z_scores`; a candidate half of whose
    members an earlier-ranked one already holds is dropped (it names no new failure). The
    label-error slice takes the last of the ``n_slices`` places: it reports a different kind of
    problem (labels the model confidently contradicts) and is never crowded out by model failures.
    """

    name = "default"

    def __init__(
        self, n_slices: int = 5, *, random_state: int = 0, contained: float = 0.5, **options
    ):
        super().__init__(n_slices, random_state=random_state, **options)
        self.contained = contained
        self.parts = [
            FailureDirectionSlicer(n_slices, random_state=random_state),
            LabelErrorSlicer(n_slices, random_state=random_state),
            # one EM run: on the development seeds restarts lowered the default's dcbench AP;
            # 25 components, as the default was developed and measured with
            MixtureSlicer(
                n_slices, random_state=random_state, **{"n_init": 1, "n_components": 25, **options}
            ),
        ]

    def fit(self, Z, y, P) -> DefaultSlicer:
        for part in self.parts:
            part.fit(Z, y, P)
        self.fitted_ = True
        return self

    def memberships(self, Z, y, P):
        fd, lab, mix = (part.memberships(Z, y, P) for part in self.parts)
        pool = np.concatenate([fd[0], mix[0]], axis=1)
        pool_names = [*fd[1], *mix[1]]
        wrong = P.argmax(axis=1) != y
        z = error_z_scores(pool, wrong)
        kept: list[int] = []
        held: list[np.ndarray] = []
        for j in np.argsort(-z, kind="stable"):
            members = pool[:, j] >= 0.5
            if not members.any():
                continue
            if any((members & other).sum() >= self.contained * members.sum() for other in held):
                continue
            kept.append(int(j))
            held.append(members)
        order = [pool[:, j] for j in kept]
        names = [pool_names[j] for j in kept]
        at = min(len(order), max(self.n_slices - 1, 0))
        order.insert(at, lab[0][:, 0])
        names.insert(at, lab[1][0])
        return np.stack(order, axis=1), names


def make_slicer(
    method: str | None, n_slices: int = 5, *, random_state: int = 0, **options
) -> Slicer:
    """A new :class:`Slicer` of a registered ``method`` (None: :data:`DEFAULT_METHOD`)."""
    name = DEFAULT_METHOD if method is None else method
    if name not in SLICERS:
        msg = f"unknown method {method!r}: use one of {tuple(SLICERS)}"
        raise ValueError(msg)
    return SLICERS[name](n_slices, random_state=random_state, **options)


def _as_slicer(fitted: Any) -> Slicer:
    if isinstance(fitted, Slicer):
        return fitted
    if isinstance(fitted, ErrorAwareMixture):
        return MixtureSlicer(fitted.n_slices, model=fitted)
    if isinstance(fitted, FailureDirections):
        return FailureDirectionSlicer(model=fitted)
    msg = f"fitted must be a Slicer, an ErrorAwareMixture or FailureDirections, got {type(fitted)}"
    raise TypeError(msg)


# --------------------------------------------------------------------------- discover


def discover(
    embeddings: np.ndarray,
    labels: np.ndarray,
    probs: np.ndarray,
    *,
    n_slices: int = 5,
    method: str | None = None,
    random_state: int = 0,
    fitted: Any = None,
    class_names: list[str] | None = None,
    threshold: float = 0.5,
    max_overlap: float = 0.5,
    **options: Any,
) -> list[Slice]:
    """Find ``n_slices`` failure slices (fewer, with a :class:`SliceWarning`, only when the data
    does not hold them), in the method's ranking (most expected errors first for most methods).

    ``method``: a name in :data:`SLICERS`; None is :data:`DEFAULT_METHOD`. ``fitted``: a
    :class:`Slicer` (or an :class:`ErrorAwareMixture` / :class:`FailureDirections`) fitted on
    another split; without it the method is fitted on these items. ``options`` go to the slicer
    (e.g. ``gamma=`` for the mixture). A candidate whose members share ``max_overlap`` or more
    (Jaccard) with an earlier slice is dropped; smaller overlaps of 25 % or more are recorded in
    :attr:`Slice.overlaps`.
    """
    if n_slices < 1:
        msg = f"n_slices must be >= 1, got {n_slices}"
        raise ValueError(msg)
    Z, y, P = check_inputs(embeddings, labels, probs)
    if len(y) == 0:
        msg = "no items to slice"
        raise ValueError(msg)
    if fitted is not None:
        slicer = _as_slicer(fitted)
        n_slices_cap = fitted.n_slices if isinstance(fitted, ErrorAwareMixture) else n_slices
    else:
        slicer = make_slicer(method, n_slices, random_state=random_state, **options)
        n_slices_cap = n_slices
    if not slicer.fitted_:
        slicer.fit(Z, y, P)
    M, names = slicer.memberships(Z, y, P)
    correct = P.argmax(axis=1) == y
    flagged, _ = likely_label_errors(y, P)
    found: list[Slice] = []
    member_sets: list[np.ndarray] = []
    want = min(n_slices, n_slices_cap)
    for j, col_name in enumerate(names):
        if len(found) == want:
            break
        m = np.clip(M[:, j], 0.0, 1.0)
        members = _members(m, threshold)
        if len(members) == 0:
            continue
        overlaps = {}
        dup = False
        for earlier, other in zip(found, member_sets, strict=True):
            inter = len(np.intersect1d(members, other, assume_unique=True))
            if inter / len(np.union1d(members, other)) >= max_overlap:
                dup = True
                break
            if inter / len(members) >= 0.25:
                overlaps[earlier.name] = round(inter / len(members), 3)
        if dup:
            continue
        stats = slice_stats(members, correct, y, class_names)
        source = _part(col_name) if slicer.name == DEFAULT_METHOD else slicer.name
        found.append(
            Slice(
                _slice_name(members, y, P, correct, class_names, source, len(found) + 1),
                source,
                m.astype(np.float32),
                members,
                stats,
                label_error_share=float(flagged[members].mean()),
                overlaps=overlaps,
            )
        )
        member_sets.append(np.sort(members))
    if len(found) < n_slices:
        warnings.warn(
            f"found {len(found)} slice(s) with members, fewer than n_slices={n_slices} "
            f"({slicer.name} offered {len(names)} candidate(s); the rest were empty or overlapped "
            "an earlier slice)",
            SliceWarning,
            stacklevel=2,
        )
    return found


def _part(col_name: str) -> str:
    """The method a default-slicer column came from."""
    for prefix, method in (
        ("failure-direction", "failure_directions"),
        ("label-errors", "label_errors"),
        ("mixture", "mixture"),
    ):
        if col_name.startswith(prefix):
            return method
    return "default"


def _members(m: np.ndarray, threshold: float) -> np.ndarray:
    """Items with membership ≥ ``threshold``, else those with at least half the top membership;
    most typical first."""
    members = np.flatnonzero(m >= threshold)
    if len(members) == 0 and m.max(initial=0.0) > 1e-3:
        members = np.flatnonzero(m >= m.max() / 2)
    return members[np.argsort(-m[members], kind="stable")]


def _slice_name(members, y, P, correct, class_names, method, rank) -> str:
    """``"<dominant label> → <dominant wrong prediction> (<method> <rank>)"``."""
    names = class_names or [str(i) for i in range(P.shape[1])]
    label = int(np.bincount(y[members], minlength=P.shape[1]).argmax())
    wrong = members[~correct[members] & (y[members] == label)]
    head = str(names[label])
    if len(wrong) * 4 >= len(members):  # errors are a quarter or more: name the confusion
        pred = int(np.bincount(P[wrong].argmax(axis=1), minlength=P.shape[1]).argmax())
        head += f" → {names[pred]}"
    return f"{head} ({method} {rank})"


def memberships(found: list[Slice], n: int) -> np.ndarray:
    """(n, len(found)) soft memberships, the input of :func:`faultlens.analysis.evaluate.slice_metrics`."""
    return np.stack([s.membership for s in found], axis=1) if found else np.zeros((n, 0))
