"""Command line for the heavy batch steps: ``faultlens demo`` and ``faultlens prepare``.

``faultlens prepare SOURCE --engine ray --workers N [--ray-address auto]`` runs the models on Ray
Data (``pip install 'faultlens[ray]'``; see docs/ray.md) and writes the same analysis folder.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from collections.abc import Sequence

import torch


def _demo(args: argparse.Namespace) -> int:
    from faultlens._demo import demo, planted_report

    t0 = time.perf_counter()
    analysis = demo(
        cache_dir=args.cache_dir,
        folder=args.out,
        n_test_per_class=args.n_per_class,
        force=args.force,
    )
    print()
    print(analysis.summary())
    print("\nplanted failure modes (test split):")
    rep = planted_report(analysis)
    for row in rep.itertuples():
        print(
            f"  {row.group:<20} n={row.n:<4} accuracy {row.accuracy:6.1%}   rest of its classes "
            f"{row.rest_of_class_accuracy:6.1%}   gap {row.gap_points:5.1f} points\n"
            f"  {'':<20} best of the top 5 slices: precision {row.slice_precision:6.1%}, recall "
            f"{row.slice_recall:6.1%} ({row.best_slice}); failure score AUROC {row.failure_auroc:.2f}"
        )
    print(f"\ndone in {time.perf_counter() - t0:.1f} s. In a notebook:")
    print(f"  import faultlens; a = faultlens.load({str(analysis.folder)!r}); a.explore()")
    return 0


def load_classifier(arch: str, checkpoint: str | None, n_classes: int) -> torch.nn.Module:
    """A model from ``module:factory`` or a torchvision architecture name, with optional weights."""
    if ":" in arch:
        mod_name, _, attr = arch.partition(":")
        try:
            factory = getattr(importlib.import_module(mod_name), attr)
        except (ImportError, AttributeError) as exc:
            msg = f"--arch {arch!r}: cannot find {attr!r} in module {mod_name!r} ({exc})"
            raise SystemExit(msg) from exc
        model = factory()
    else:
        import torchvision

        try:
            model = torchvision.models.get_model(arch, weights=None, num_classes=n_classes)
        except ValueError as exc:
            msg = f"unknown architecture {arch!r}: use a torchvision name or module:factory"
            raise SystemExit(msg) from exc
    if checkpoint:
        try:
            state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        except FileNotFoundError as exc:
            msg = f"--checkpoint {checkpoint!r}: no such file"
            raise SystemExit(msg) from exc
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        model.load_state_dict(state)
    return model


def _embedder(spec: str, image_size: int):
    from faultlens.models.embedders import EfficientNetLiteEmbedder, OpenClipEmbedder

    if spec == "offline":
        return EfficientNetLiteEmbedder(image_size)
    if spec.startswith("open_clip"):
        parts = spec.split(":")
        name = parts[1] if len(parts) > 1 else "ViT-B-32"
        pretrained = parts[2] if len(parts) > 2 else "laion2b_s34b_b79k"
        return OpenClipEmbedder(name, pretrained)
    msg = f"unknown embedder {spec!r}: 'offline' or 'open_clip:MODEL:PRETRAINED_TAG_OR_FILE'"
    raise SystemExit(msg)


def _prepare(args: argparse.Namespace) -> int:
    from torchvision import transforms as T

    from faultlens.analysis.core import analyze
    from faultlens.data.sources import as_source
    from faultlens.models.classifier import Classifier

    kwargs = {}
    if args.class_names:
        kwargs["class_names"] = [c.strip() for c in args.class_names.split(",")]
    source = as_source(args.source, **kwargs)
    model = load_classifier(args.arch, args.checkpoint, len(source.class_names))
    transform = T.Compose(
        [
            T.Resize(args.input_size, antialias=True),
            T.CenterCrop(args.input_size),
            T.ToTensor(),
            T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
        ]
    )
    analysis = analyze(
        source,
        classifier=Classifier(model, transform, class_names=source.class_names, name=args.arch),
        embedder=_embedder(args.embedder, args.image_size),
        cache_dir=args.cache_dir,
        batch_size=args.batch_size,
        num_workers=args.workers,
        engine=_engine(args),
        force=args.force,
        thumbnails=args.thumbnails or None,
    )
    out = analysis.save(args.out)
    print(analysis.summary())
    print(f"\nanalysis saved to {out}")
    return 0


def _engine(args: argparse.Namespace) -> object:
    """``local``, or a RayEngine from the ``--workers``/``--ray-*`` options."""
    ray_only = {
        "--ray-address": args.ray_address,
        "--cpus-per-worker": args.cpus_per_worker,
        "--gpus-per-worker": args.gpus_per_worker,
        "--shard-size": args.shard_size,
    }
    if args.engine == "local":
        given = [flag for flag, value in ray_only.items() if value is not None]
        if given:
            msg = f"{', '.join(given)} only apply with --engine ray"
            raise SystemExit(msg)
        return "local"
    from faultlens.models.ray_runner import RayEngine

    opts = {
        "workers": args.workers,
        "address": args.ray_address,
        "num_cpus": args.cpus_per_worker,
        "num_gpus": args.gpus_per_worker,
        "shard_size": args.shard_size,
    }
    try:
        return RayEngine(**{k: v for k, v in opts.items() if v is not None})
    except ValueError as exc:
        raise SystemExit(str(exc)) from None


def _at_least(low: int) -> object:
    """An argparse type: a whole number, at least ``low``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if value < low:
            msg = f"{text!r} is not a whole number ≥ {low}"
            raise argparse.ArgumentTypeError(msg)
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="faultlens", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="build the offline demo analysis (spurious Fashion-MNIST)")
    d.add_argument("--out", help="analysis folder (default: <cache>/demo-analysis)")
    d.add_argument("--cache-dir", help="artifact cache (default: $FAULTLENS_CACHE or user cache)")
    d.add_argument("--n-per-class", type=_at_least(1), default=400, help="test images per class")
    d.add_argument("--force", action="store_true", help="recompute everything")
    d.set_defaults(func=_demo)

    r = sub.add_parser("prepare", help="analyse your own images with your own classifier")
    r.add_argument("source", help="a folder of class sub-folders, or a CSV/parquet of path,label")
    r.add_argument("--out", required=True, help="analysis folder to write")
    r.add_argument("--arch", required=True, help="torchvision architecture name or module:factory")
    r.add_argument("--checkpoint", help="state_dict file of the classifier (weights_only load)")
    r.add_argument("--class-names", help="comma-separated, in the model's output order")
    r.add_argument("--input-size", type=_at_least(1), default=224, help="classifier input size")
    r.add_argument("--embedder", default="offline", help="'offline' or 'open_clip:MODEL:TAG'")
    r.add_argument(
        "--image-size", type=_at_least(1), default=224, help="offline embedder input size"
    )
    r.add_argument("--batch-size", type=_at_least(1), default=64)
    r.add_argument(
        "--thumbnails",
        type=_at_least(0),
        default=96,
        help="size of the thumbnails stored with the analysis, rendered in the same pass (0: none)",
    )
    r.add_argument(
        "--workers",
        type=_at_least(0),
        default=None,
        help="local: worker processes (on CPU they decode and run the models); ray: model actors "
        "(default 2)",
    )
    r.add_argument(
        "--engine",
        choices=["local", "ray"],
        default="local",
        help="where the models run: this process, or Ray Data (pip install 'faultlens[ray]')",
    )
    r.add_argument(
        "--ray-address",
        help="the Ray cluster to join ('auto' inside a ray job); default: start a local one",
    )
    r.add_argument("--cpus-per-worker", type=float, help="ray: CPUs per actor (default 1)")
    r.add_argument("--gpus-per-worker", type=float, help="ray: GPUs per actor (default 0)")
    r.add_argument(
        "--shard-size", type=_at_least(1), help="ray: images per cached shard (default 1024)"
    )
    r.add_argument("--cache-dir")
    r.add_argument("--force", action="store_true")
    r.set_defaults(func=_prepare)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run a command. What the user got wrong (a missing folder or file, a bad value) ends in one
    line on stderr and exit status 2, without a traceback."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (FileNotFoundError, NotADirectoryError, ValueError) as exc:
        parser.exit(2, f"faultlens {args.command}: error: {exc}\n")


if __name__ == "__main__":
    sys.exit(main())
