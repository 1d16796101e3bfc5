"""Describing a slice, each description labelled with where it came from, ranked, with effect sizes
and 95 % intervals, against a reference group (by default the correctly classified images of the
slice's class; or every other image; or rows the user passes).

Offline, from the pixels, the model and the table:

- :func:`evidence_location` — where the model's evidence sits (activation or Grad-CAM maps, each
  normalised to sum 1): the share of map mass per region of :data:`REGIONS`, members minus
  reference, with bootstrap intervals and the three mean-map pictures;
- :func:`image_properties` / :func:`property_effects` — brightness, contrast, saturation,
  sharpness, noise, object size and position, aspect ratio, resolution
  (:data:`PROPERTY_NAMES`): Hedges' g with an interval, in plain words;
- :func:`columns` — the user's columns: over-represented categories (lift) and shifted numbers;
- :class:`ConceptFromExamples` — a concept shown by example images, tested against random
  concepts (TCAV's protocol);
- :func:`imagenet_tags` — ImageNet labels of the offline model, shown only when enriched beyond
  chance (Fisher's exact test, Benjamini–Hochberg).

From text models (need weights): :func:`caption_slice` (open_clip CoCa, :class:`OpenClipCaptioner`)
and :func:`rank_phrases` (CLIP text tower). Every text description carries a generalisation check:
its precision when used to retrieve held-out members. :func:`summarize` ranks every finding by its
evidence into one sentence; :func:`describe_members` runs all the describers the inputs allow.

A captioner is anything with ``caption(images) -> list[str]`` and a ``name``.

Every finding says which members carry it (``details["rows"]``; the summary's parts carry
``rows``), so a view can select them. :mod:`faultlens.analysis.describe.maps` makes the
where-the-model-looks maps from a classifier (Grad-CAM at its last spatial layer), as
:meth:`Analysis.describe` does by default.
"""

from faultlens.analysis.describe._common import (
    Description,
    benjamini_hochberg,
    hedges_g,
    held_out_precision,
    retrieval_precision,
    split_halves,
)
from faultlens.analysis.describe.concepts import ConceptFromExamples, concept_test, rank_concepts
from faultlens.analysis.describe.pixels import (
    REGIONS,
    evidence_location,
    image_properties,
    map_pictures,
    property_effects,
    property_values,
    region_masks,
)
from faultlens.analysis.describe.summary import describe_members, findings, summarize
from faultlens.analysis.describe.tabular import columns
from faultlens.analysis.describe.text import (
    BACKGROUNDS,
    COLOURS,
    ORIENTATIONS,
    PARTS,
    SIZES,
    TEXTURES,
    Captioner,
    OpenClipCaptioner,
    caption_slice,
    contrast_terms,
    imagenet_tags,
    rank_phrases,
    representatives,
    vocabulary,
)
from faultlens.data.properties import PROPERTY_COLUMNS, PROPERTY_NAMES

__all__ = [
    "BACKGROUNDS",
    "COLOURS",
    "ORIENTATIONS",
    "PARTS",
    "PROPERTY_COLUMNS",
    "PROPERTY_NAMES",
    "REGIONS",
    "SIZES",
    "TEXTURES",
    "Captioner",
    "ConceptFromExamples",
    "Description",
    "OpenClipCaptioner",
    "benjamini_hochberg",
    "caption_slice",
    "columns",
    "concept_test",
    "contrast_terms",
    "describe_members",
    "evidence_location",
    "findings",
    "hedges_g",
    "held_out_precision",
    "image_properties",
    "imagenet_tags",
    "map_pictures",
    "property_effects",
    "property_values",
    "rank_concepts",
    "rank_phrases",
    "region_masks",
    "representatives",
    "retrieval_precision",
    "split_halves",
    "summarize",
    "vocabulary",
]
