"""Embedders and classifier outputs on seeded or real weights; nothing is downloaded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import faultlens
from faultlens.models.classifier import outputs_from_logits, outputs_from_probs
from faultlens.models.embedders import EfficientNetLiteEmbedder, LayerEmbedder, OpenClipEmbedder
from tests.helpers import blob_images, tiny_transform


def _pil(n: int) -> list[Image.Image]:
    imgs, _ = blob_images(n)
    return [Image.fromarray(i) for i in imgs]


def test_open_clip_tiny_model_embeds_images_and_texts(tiny_clip_name: str) -> None:
    torch.manual_seed(0)
    emb = OpenClipEmbedder(tiny_clip_name, pretrained=None, device="cpu")
    z = emb(_pil(6), batch_size=4)
    assert z.shape == (6, 32) and z.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-5)
    # the embedder path equals open_clip's own encode_image on the same preprocessing
    x = torch.stack([emb.transform(im) for im in _pil(6)])
    with torch.no_grad():
        ref = torch.nn.functional.normalize(emb.module.encode_image(x), dim=-1).numpy()
    np.testing.assert_allclose(z, ref, atol=1e-5)
    t = emb.encode_text(["a photo of a shirt", "a red sneaker", "a bag"])
    assert t.shape == (3, 32)
    np.testing.assert_allclose(np.linalg.norm(t, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(t[0], t[1])


def test_open_clip_local_checkpoint_round_trips(tiny_clip_name: str, tmp_path: Path) -> None:
    torch.manual_seed(1)
    a = OpenClipEmbedder(tiny_clip_name, pretrained=None, device="cpu")
    ckpt = tmp_path / "tiny.pt"
    torch.save(a.module.state_dict(), ckpt)
    b = OpenClipEmbedder(tiny_clip_name, pretrained=str(ckpt), device="cpu")
    np.testing.assert_allclose(a(_pil(4)), b(_pil(4)), atol=1e-6)
    np.testing.assert_allclose(a.encode_text(["x"]), b.encode_text(["x"]), atol=1e-6)
    assert "file-tiny.pt" in b.id


def test_open_clip_errors_name_the_fix(tiny_clip_name: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no model"):
        OpenClipEmbedder("no-such-model-xyz", pretrained=None)
    with pytest.raises(FileNotFoundError, match="not found"):
        OpenClipEmbedder(tiny_clip_name, pretrained=str(tmp_path / "missing.pt"))


def test_open_clip_without_network_says_so(tiny_clip_name: str, monkeypatch) -> None:
    import socket

    def refuse(*_a, **_k):
        raise OSError("network is unreachable")

    import huggingface_hub.constants

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(RuntimeError, match="EfficientNetLiteEmbedder"):
        OpenClipEmbedder("ViT-B-32", pretrained="laion2b_s34b_b79k", device="cpu")


def test_efficientnet_lite_real_weights_know_espresso() -> None:
    from skimage import data

    emb = EfficientNetLiteEmbedder(224, device="cpu")
    out = emb([data.coffee(), data.chelsea()])
    feats, logits = out[:, emb.outputs["embedding"]], out[:, emb.outputs["imagenet_logits"]]
    assert feats.shape == (2, 1280)
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, atol=1e-5)
    top = [emb.imagenet_classes[i] for i in logits.argmax(axis=1)]
    assert top[0] == "espresso"
    assert "cat" in top[1]


def test_layer_embedder_pools_and_names_close_layers(tiny_net) -> None:
    emb = LayerEmbedder(tiny_net, "conv", tiny_transform)
    z = emb(_pil(5))
    assert z.shape == (5, 8)
    with pytest.raises(ValueError, match="Close names: \\['conv'\\]"):
        LayerEmbedder(tiny_net, "convv", tiny_transform)


def test_classifier_outputs_match_hand_computation(tiny_net) -> None:
    clf = faultlens.Classifier(tiny_net, tiny_transform)
    imgs, labels = blob_images(6)
    logits = clf([Image.fromarray(i) for i in imgs])
    out = outputs_from_logits(logits, labels)
    p = torch.softmax(torch.from_numpy(logits), 1).numpy()
    np.testing.assert_allclose(out.probs, p, atol=1e-6)
    np.testing.assert_allclose(out.loss, -np.log(p[np.arange(6), labels]), rtol=1e-5)
    assert (out.correct == (p.argmax(1) == labels)).all()
    np.testing.assert_allclose(out.confidence, p.max(1), atol=1e-6)


def test_outputs_from_probs_validates() -> None:
    good = np.array([[0.7, 0.3], [0.2, 0.8]])
    out = outputs_from_probs(good, np.array([0, 0]))
    assert out.correct.tolist() == [True, False]
    with pytest.raises(ValueError, match="row 1 sums to"):
        outputs_from_probs(np.array([[0.5, 0.5], [2.0, 3.0]]), np.array([0, 1]))
    with pytest.raises(ValueError, match="NaN"):
        outputs_from_probs(np.array([[np.nan, 1.0]]), np.array([0]))
    with pytest.raises(ValueError, match="label 2 at item 0"):
        outputs_from_probs(good, np.array([2, 0]))
    with pytest.raises(ValueError, match="2 rows of probs but 3 labels"):
        outputs_from_probs(good, np.array([0, 1, 1]))


def test_conv_models_run_channels_last_with_the_same_outputs() -> None:
    from faultlens.models.base import TorchBatchModel
    from tests.helpers import TinyNet

    x = torch.from_numpy(np.random.default_rng(0).random((5, 3, 16, 16), dtype=np.float32))
    plain = TorchBatchModel(TinyNet(), tiny_transform, channels_last=False, device="cpu")
    fast = TorchBatchModel(TinyNet(), tiny_transform, device="cpu")  # auto: has a Conv2d
    assert not plain.channels_last and fast.channels_last
    assert fast.module.conv.weight.is_contiguous(memory_format=torch.channels_last)
    np.testing.assert_allclose(fast.run(x), plain.run(x), atol=1e-5)
    assert fast.id == plain.id  # the cache key does not depend on the memory order
    mlp = TorchBatchModel(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(768, 2)),
                          tiny_transform, device="cpu")  # fmt: skip
    assert not mlp.channels_last and mlp.run(x).shape == (5, 2)


def test_decode_workers_use_every_spare_core_when_a_model_is_on_a_gpu(
    monkeypatch, tmp_path
) -> None:
    import os
    from types import SimpleNamespace

    from faultlens.data.sources import ArraySource, FolderSource
    from faultlens.models.base import TorchBatchModel
    from faultlens.models.runner import default_workers

    (tmp_path / "a").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "a" / "x.png")
    folder = FolderSource(tmp_path)
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(12)), raising=False)
    gpu = SimpleNamespace(device=torch.device("cuda"))
    cpu = SimpleNamespace(device=torch.device("cpu"))
    assert default_workers(folder, [cpu]) == 4  # the model needs the other cores
    net = TorchBatchModel(torch.nn.Linear(2, 2), lambda im: im, device="cpu", model_id="l")
    assert default_workers(folder, [net]) == 8  # each worker runs it: one per core, up to 8
    assert default_workers(folder, [cpu, gpu]) == 11  # decoding is the bottleneck
    assert default_workers(ArraySource(np.zeros((2, 4, 4, 3), np.uint8), [0, 1]), [gpu]) == 0
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0}, raising=False)
    assert default_workers(folder, [gpu]) == 0
