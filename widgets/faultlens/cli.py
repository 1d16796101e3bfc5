"""The faultlens command line: the heavy batch steps, run outside a notebook.

  faultlens demo                      build the offline demo analysis
  faultlens prepare SOURCE --out DIR  analyse your images with your classifier
  faultlens report DIR --out FILE     write the self-contained HTML report of an analysis

`faultlens prepare SOURCE --engine ray --workers N [--ray-address auto]` runs the models on Ray
Data (pip install "faultlens[ray]"; see docs/ray.md) and writes the same analysis folder.
Nothing here imports torch until a command runs, so `faultlens --help` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from faultlens._version import __version__

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INTERPOLATIONS = ("bilinear", "bicubic", "nearest")

EPILOG = """examples:
  faultlens prepare photos/ --arch resnet18 --checkpoint best.ckpt --out analysis/ \
      --weights ResNet18_Weights.IMAGENET1K_V1
  faultlens prepare digits/ --arch mymodels:small_cnn --checkpoint cnn.pt --out analysis/ \
      --channels 1 --input-size 28 --mean 0.286 --std 0.353
  faultlens report analysis/ --out report.html

In a notebook:  import faultlens; faultlens.explore(faultlens.load("analysis/"))
"""


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
    print(f"\ndone in {time.perf_counter() - t0:.1f} s. {_open_hint(analysis.folder)}")
    return 0


def _open_hint(folder: object) -> str:
    """How to open the analysis folder ``folder`` in a notebook (the last lines a command prints)."""
    load = f"a = faultlens.load({str(folder)!r})"
    return f"In a notebook:\n  import faultlens; {load}; faultlens.explore(a)"


@dataclass(frozen=True)
class Preprocess:
    """How ``prepare`` turns a PIL image into the classifier's input tensor.

    Resize the short side to ``resize`` (default: ``input_size``), centre-crop ``input_size``,
    convert to ``channels`` (1: grayscale), scale to [0, 1] and normalise with ``mean``/``std``
    (one value per channel).
    """

    input_size: int = 224
    resize: int | None = None
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    channels: int = 3
    interpolation: str = "bilinear"

    def checked(self) -> Preprocess:
        """Itself with one-value mean/std spread over the channels; a mismatch is a ValueError."""
        out = self
        for name in ("mean", "std"):
            values = tuple(float(v) for v in getattr(out, name))
            if len(values) == 1:
                values = values * out.channels
            if len(values) != out.channels:
                msg = (
                    f"--{name} has {len(values)} values but the model takes {out.channels} "
                    f"channel(s): give one value per channel (or one for all)"
                )
                raise ValueError(msg)
            out = replace(out, **{name: values})
        if any(v <= 0 for v in out.std):
            msg = f"--std must be positive, got {list(out.std)}"
            raise ValueError(msg)
        return out

    def transform(self) -> Any:
        """The torchvision transform: PIL RGB image → channels×input×input float tensor."""
        from torchvision import transforms as T

        p = self.checked()
        mode = getattr(T.InterpolationMode, p.interpolation.upper())
        steps = [
            T.Resize(p.resize or p.input_size, interpolation=mode, antialias=True),
            T.CenterCrop(p.input_size),
        ]
        if p.channels == 1:
            steps.append(T.Grayscale(num_output_channels=1))
        steps += [T.ToTensor(), T.Normalize(list(p.mean), list(p.std))]
        return T.Compose(steps)


def preprocess_from_weights(name: str) -> Preprocess:
    """The preprocessing of a torchvision weights enum, e.g. ``ResNet18_Weights.IMAGENET1K_V1``
    (read from the enum's ``transforms()``; no weights are downloaded)."""
    import torchvision

    try:
        weights = torchvision.models.get_weight(name)
    except (ValueError, KeyError, AttributeError) as exc:
        msg = (
            f"--weights {name!r} is not a torchvision weights enum: use a name like "
            "ResNet18_Weights.IMAGENET1K_V1 (see torchvision.models.list_models())"
        )
        raise ValueError(msg) from exc
    t = weights.transforms()
    crop, resize = t.crop_size[0], t.resize_size[0]
    return Preprocess(
        input_size=int(crop),
        resize=int(resize),
        mean=tuple(t.mean),
        std=tuple(t.std),
        interpolation=t.interpolation.value,
    )


def preprocess_from_timm(name: str) -> Preprocess:
    """The preprocessing of a timm pretrained config, e.g. ``resnet50.a1_in1k`` (timm's own
    metadata; nothing is downloaded): input size, ``input / crop_pct`` resize, mean, std."""
    try:
        import timm
    except ImportError as exc:
        msg = "--timm-config needs timm: pip install timm"
        raise ImportError(msg) from exc
    try:
        cfg = timm.get_pretrained_cfg(name)
    except Exception as exc:  # timm raises several types for unknown names
        cfg = None
        err = exc
    else:
        err = None
    if cfg is None:
        msg = (
            f"--timm-config {name!r}: timm has no pretrained config of that name ({err or 'none'})"
        )
        raise ValueError(msg)
    channels, _, size = cfg.input_size
    crop_pct = cfg.crop_pct or 1.0
    interp = cfg.interpolation if cfg.interpolation in INTERPOLATIONS else "bilinear"
    return Preprocess(
        input_size=int(size),
        resize=int(size / crop_pct),
        mean=tuple(cfg.mean),
        std=tuple(cfg.std),
        channels=int(channels),
        interpolation=interp,
    )


def preprocess_from_args(args: argparse.Namespace) -> Preprocess:
    """``--weights`` or ``--timm-config`` (when given) as the base, then the explicit flags."""
    if args.weights and args.timm_config:
        msg = "give --weights or --timm-config, not both"
        raise ValueError(msg)
    base = Preprocess()
    if args.weights:
        base = preprocess_from_weights(args.weights)
    elif args.timm_config:
        base = preprocess_from_timm(args.timm_config)
    flags = {
        "input_size": args.input_size,
        "resize": args.resize,
        "mean": args.mean,
        "std": args.std,
        "channels": args.channels,
        "interpolation": args.interpolation,
    }
    out = replace(base, **{k: v for k, v in flags.items() if v is not None})
    if args.channels == 1 and base.channels == 3 and not (args.mean or args.std):
        # a grayscale model with an RGB config: one mean/std (the channels' average)
        out = replace(
            out, mean=(sum(out.mean) / len(out.mean),), std=(sum(out.std) / len(out.std),)
        )
    return out.checked()


def load_classifier(arch: str, checkpoint: str | None, n_classes: int) -> Any:
    """A model from ``module:factory`` or a torchvision architecture name, with optional weights.

    A factory that takes ``num_classes`` or ``n_classes`` gets the source's number of classes.
    ``checkpoint``: see :func:`faultlens.models.classifier.load_weights` (state dicts only,
    DDP/Lightning nesting and prefixes unwrapped).
    """
    if ":" in arch:
        mod_name, _, attr = arch.partition(":")
        try:
            factory = getattr(importlib.import_module(mod_name), attr)
        except (ImportError, AttributeError) as exc:
            msg = f"--arch {arch!r}: cannot find {attr!r} in module {mod_name!r} ({exc})"
            raise SystemExit(msg) from exc
        try:
            params = inspect.signature(factory).parameters
        except (TypeError, ValueError):
            params = {}
        kw = next((k for k in ("num_classes", "n_classes") if k in params), None)
        model = factory(**{kw: n_classes}) if kw else factory()
    else:
        import torchvision

        try:
            model = torchvision.models.get_model(arch, weights=None, num_classes=n_classes)
        except ValueError as exc:
            msg = f"unknown architecture {arch!r}: use a torchvision name or module:factory"
            raise SystemExit(msg) from exc
    if checkpoint:
        from faultlens.models.classifier import load_weights

        try:
            load_weights(model, checkpoint)
        except FileNotFoundError as exc:
            msg = f"--checkpoint {checkpoint!r}: no such file"
            raise SystemExit(msg) from exc
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
    from faultlens.analysis.analyze import analyze
    from faultlens.data.sources import as_source
    from faultlens.models.classifier import Classifier

    kwargs = {}
    if args.class_names:
        kwargs["class_names"] = [c.strip() for c in args.class_names.split(",")]
    preprocess = preprocess_from_args(args)
    source = as_source(args.source, **kwargs)
    model = load_classifier(args.arch, args.checkpoint, len(source.class_names))
    transform = preprocess.transform()
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
    print(f"\nanalysis saved to {out}. {_open_hint(out)}")
    print(f"or a shareable page:  faultlens report {str(out)!r} --out report.html")
    return 0


def _report(args: argparse.Namespace) -> int:
    from pathlib import Path

    import faultlens
    from faultlens.report import write_report

    folder = Path(args.folder)
    if not folder.is_dir():
        msg = (
            f"{str(folder)!r} is not an analysis folder (write one with faultlens prepare or demo)"
        )
        raise FileNotFoundError(msg)
    out = write_report(faultlens.load(folder), args.out, title=args.title)
    print(f"report written to {Path(out).resolve()}")
    return 0


#: The options that only apply with ``--engine ray``: the parsed name, and RayEngine's argument.
_RAY_OPTIONS = {
    "ray_address": "address",
    "cpus_per_worker": "num_cpus",
    "gpus_per_worker": "num_gpus",
    "shard_size": "shard_size",
}


def _engine(args: argparse.Namespace) -> object:
    """``local``, or a RayEngine from the ``--workers``/``--ray-*`` options."""
    given = {name: getattr(args, name) for name in _RAY_OPTIONS if getattr(args, name) is not None}
    if args.engine == "local":
        if given:
            flags = ", ".join("--" + name.replace("_", "-") for name in given)
            msg = f"{flags} only apply with --engine ray"
            raise SystemExit(msg)
        return "local"
    from faultlens.models.ray_runner import RayEngine

    opts = {_RAY_OPTIONS[name]: value for name, value in given.items()}
    if args.workers is not None:
        opts["workers"] = args.workers
    try:
        return RayEngine(**opts)
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


def _floats(text: str) -> tuple[float, ...]:
    """An argparse type: comma-separated numbers, e.g. ``0.485,0.456,0.406``."""
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        msg = f"{text!r} is not comma-separated numbers (e.g. 0.485,0.456,0.406)"
        raise argparse.ArgumentTypeError(msg) from None


def _command(
    sub: Any, name: str, func: Any, *, help: str, description: str | None = None, **kw: Any
) -> argparse.ArgumentParser:
    """The sub-command ``name`` that runs ``func(args)``; its description keeps its line breaks."""
    p = sub.add_parser(
        name,
        help=help,
        description=description or help,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        **kw,
    )
    p.set_defaults(func=func)
    return p


def _cache_options(p: argparse.ArgumentParser, force: str) -> None:
    p.add_argument("--cache-dir", help="artifact cache (default: $FAULTLENS_CACHE or user cache)")
    p.add_argument("--force", action="store_true", help=force)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="faultlens",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"faultlens {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    _demo_command(sub)
    _prepare_command(sub)
    _report_command(sub)
    return p


def _demo_command(sub: Any) -> None:
    d = _command(
        sub, "demo", _demo, help="build the offline demo analysis (spurious Fashion-MNIST)"
    )
    d.add_argument("--out", help="analysis folder (default: <cache>/demo-analysis)")
    d.add_argument("--n-per-class", type=_at_least(1), default=400, help="test images per class")
    _cache_options(d, force="recompute everything")


def _prepare_command(sub: Any) -> None:
    r = _command(
        sub,
        "prepare",
        _prepare,
        help="analyse your own images with your own classifier",
        description="Run your classifier and an embedder over a folder or table of images and\n"
        "write an analysis folder (open it with faultlens.explore(faultlens.load(FOLDER))).\n"
        "The input transform: resize the short side, centre-crop, (grayscale), normalise;\n"
        "its values come from --weights or --timm-config when given, then the flags.",
        epilog=EPILOG,
    )
    r.add_argument("source", help="a folder of class sub-folders, or a CSV/parquet of path,label")
    r.add_argument("--out", required=True, help="analysis folder to write")
    r.add_argument("--arch", required=True, help="torchvision architecture name or module:factory")
    r.add_argument(
        "--checkpoint",
        help="the classifier's weights: a state dict (.pt/.pth/.ckpt; Lightning and DDP "
        "checkpoints are unwrapped) or .safetensors; loaded with weights_only, never unpickled",
    )
    r.add_argument("--class-names", help="comma-separated, in the model's output order")
    _transform_options(r)
    r.add_argument(
        "--embedder",
        default="offline",
        help="'offline' or 'open_clip:MODEL:TAG' (default: offline)",
    )
    r.add_argument(
        "--image-size",
        type=_at_least(1),
        default=224,
        help="offline embedder input size (default: 224)",
    )
    r.add_argument(
        "--batch-size", type=_at_least(1), default=64, help="images per model call (default: 64)"
    )
    r.add_argument(
        "--thumbnails",
        type=_at_least(0),
        default=96,
        help="size of the thumbnails stored with the analysis, rendered in the same pass "
        "(0: none; default: 96)",
    )
    _engine_options(r)
    _cache_options(r, force="recompute instead of reusing the cache")


def _transform_options(r: argparse.ArgumentParser) -> None:
    pre = r.add_argument_group("input transform (default: 224 px, ImageNet mean/std, RGB)")
    pre.add_argument(
        "--weights",
        metavar="ENUM",
        help="take the transform of a torchvision weights enum, e.g. ResNet18_Weights.IMAGENET1K_V1 "
        "(no download)",
    )
    pre.add_argument(
        "--timm-config",
        metavar="NAME",
        help="take the transform of a timm pretrained config, e.g. resnet50.a1_in1k (needs timm)",
    )
    pre.add_argument(
        "--input-size", type=_at_least(1), help="side of the centre crop the model takes (224)"
    )
    pre.add_argument(
        "--resize", type=_at_least(1), help="short side before the crop (default: --input-size)"
    )
    pre.add_argument(
        "--mean", type=_floats, help="per-channel mean, comma-separated (or one value for all)"
    )
    pre.add_argument(
        "--std", type=_floats, help="per-channel std, comma-separated (or one value for all)"
    )
    pre.add_argument(
        "--channels", type=int, choices=[1, 3], help="1: the model takes grayscale images (3)"
    )
    pre.add_argument("--interpolation", choices=INTERPOLATIONS, help="resize filter (bilinear)")


def _engine_options(r: argparse.ArgumentParser) -> None:
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


def _report_command(sub: Any) -> None:
    w = _command(
        sub,
        "report",
        _report,
        help="write the self-contained HTML report of an analysis folder",
        description="Write one offline HTML file (images inlined) of an analysis folder:\n"
        "its map, classes, saved slices and their descriptions.",
    )
    w.add_argument("folder", help="an analysis folder (from faultlens prepare, demo or save)")
    w.add_argument(
        "--out", default="report.html", help="the HTML file to write (default: ./report.html)"
    )
    w.add_argument("--title", default="faultlens report", help="the page title")


def main(argv: Sequence[str] | None = None) -> int:
    """Run a command. What the user got wrong (a missing folder or file, a bad value, a missing
    optional package) ends in one line on stderr and exit status 2, without a traceback."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (FileNotFoundError, NotADirectoryError, ValueError, ImportError) as exc:
        parser.exit(2, f"faultlens {args.command}: error: {exc}\n")


if __name__ == "__main__":
    sys.exit(main())
