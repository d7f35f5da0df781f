"""DEKRPipeline: real batching equal to batch size 1, plain + flip in one network call, flip-shift
input, rescore weights, options and errors (small HRNet backbone, synthetic weights)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from bupose.core.inference import load_model
from bupose.core.model import PoseModel, build_model
from bupose.core.weights import CheckpointError
from bupose.dekr.decode import DEKRDecoder
from bupose.dekr.pipeline import DEKRPipeline, default_input_size, flip_shift, load_rescore_net
from bupose.dekr.preprocess import multi_scale_size, normalize_images, warp_image

sys.path.insert(0, str(Path(__file__).parent))
from _dekr_golden import build_state_dict

pytest.importorskip("bupose.hrnet", reason="pipeline tests need a backbone (bupose-hrnet, test extra)")

INPUT = 64


def _model(layout: str = "coco17") -> PoseModel:
    torch.manual_seed(0)
    m = build_model("dekr", "hrnet_w18_small", layout)
    head = m.head
    with torch.no_grad():
        final = head.head_heatmap[1]
        torch.nn.init.normal_(final.weight, std=2.0)
        final.bias.zero_()
        final.bias[-1] = 0.3
        for layer in head.offset_final_layer:
            torch.nn.init.normal_(layer.weight, std=1.0)
    return m.eval()


@pytest.fixture(scope="module")
def model() -> PoseModel:
    return _model()


def _images() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    shapes = [(45, 60), (50, 35), (45, 60), (32, 32), (46, 61)]
    out = []
    for h, w in shapes:
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        img[h // 4 : h // 2, w // 3 : w // 2] = 255  # some structure
        out.append(img)
    return out


class _CountingModel(torch.nn.Module):
    def __init__(self, model: PoseModel) -> None:
        super().__init__()
        self.inner = model
        self.batches: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        self.batches.append(tuple(x.shape))
        return self.inner(x)


@pytest.fixture(scope="module")
def singles(model: PoseModel) -> list[Any]:
    pipe = DEKRPipeline(model, flip=True, input_size=INPUT)
    return [pipe.predict_batch([im])[0] for im in _images()]


def test_batch_equals_single_exactly(model: PoseModel, singles: list[Any]) -> None:
    pipe = DEKRPipeline(model, flip=True, input_size=INPUT)
    images = _images()
    batched = pipe.predict_batch(images)
    assert sum(len(p) for p in batched) > 10, "the test model must detect people"
    for b, s in zip(batched, singles, strict=True):
        assert len(b) == len(s)
        np.testing.assert_allclose(b.keypoints, s.keypoints, rtol=0, atol=1e-4)
        np.testing.assert_allclose(b.scores, s.scores, rtol=0, atol=1e-6)


def test_one_network_call_per_input_size_with_flip_in_the_batch(model: PoseModel) -> None:
    pipe = DEKRPipeline(model, flip=True, input_size=INPUT)
    counting = _CountingModel(model)
    pipe.model = counting  # type: ignore[assignment]
    images = _images()
    pipe.predict_batch(images)
    sizes = {multi_scale_size(im.shape[:2], INPUT).size_wh for im in images}
    assert len(counting.batches) == len(sizes) == 3
    groups = sorted(n for n, *_ in counting.batches)
    # 3 landscape images share one input size, 1 portrait, 1 square; plain + flip doubles
    assert groups == [2, 2, 6]


def test_pad_mode_runs_one_call_per_scale(model: PoseModel, singles: list[Any]) -> None:
    images = [im for im in _images() if im.shape[0] < im.shape[1]]  # landscape: one input size
    assert len({multi_scale_size(im.shape[:2], INPUT).size_wh for im in images}) == 1
    pipe = DEKRPipeline(model, flip=True, input_size=INPUT, batch_mode="pad")
    counting = _CountingModel(model)
    pipe.model = counting  # type: ignore[assignment]
    out = pipe.predict_batch([*images, _images()[3]])
    assert len(counting.batches) == 1 and counting.batches[0][0] == 2 * (len(images) + 1)
    # images whose input size is the batch maximum are not padded: same as batch size 1
    ref = [s for im, s in zip(_images(), singles) if im.shape[0] < im.shape[1]]
    for a, b in zip(ref, out[: len(images)], strict=True):
        assert len(a) == len(b)
        np.testing.assert_allclose(a.keypoints, b.keypoints, rtol=0, atol=1e-4)
    assert out[-1].num_keypoints == 17


def test_pipeline_equals_decoder_on_manual_network_outputs(model: PoseModel) -> None:
    """predict_batch = warp -> network on [plain, flip_shift(plain)] -> DEKRDecoder."""
    img = _images()[1]
    pipe = DEKRPipeline(model, flip=True, input_size=INPUT, keypoint_threshold=0.02)
    got = pipe.predict_batch([img])[0]
    meta = multi_scale_size(img.shape[:2], INPUT)
    x = normalize_images([warp_image(img, meta)])
    with torch.no_grad():
        out = model(torch.cat([x, flip_shift(x)]))
    from bupose.dekr.decode import ScaleOutput

    so = ScaleOutput(1.0, out["heatmap"][0], out["offset"][0], out["heatmap"][1], out["offset"][1], meta)
    ref = DEKRDecoder("coco17", keypoint_threshold=0.02).decode([so])
    assert len(ref) == len(got) > 0
    np.testing.assert_allclose(got.keypoints, ref.keypoints, rtol=0, atol=1e-5)


def test_flip_shift_semantics() -> None:
    x = torch.arange(10, dtype=torch.float32).view(1, 1, 1, 10)
    y = flip_shift(x)
    # flipped: 9..0; columns [0, 7) take flipped columns [3, 10); the last 3 keep flipped values
    assert y.flatten().tolist() == [6, 5, 4, 3, 2, 1, 0, 2, 1, 0]
    assert x.flatten().tolist() == list(range(10)), "input must not be modified"


def test_multi_scale_and_no_flip_run(model: PoseModel) -> None:
    images = _images()[:2]
    ms = DEKRPipeline(model, flip=True, scales=(2.0, 0.5, 1.0), input_size=INPUT)
    assert ms.scales == (2.0, 1.0, 0.5)
    res = ms.predict_batch(images)
    assert len(res) == 2 and all(p.num_keypoints == 17 for p in res)
    nf = DEKRPipeline(model, flip=False, input_size=INPUT).predict_batch(images)
    assert len(nf) == 2


def test_rescore_weights_option(model: PoseModel, tmp_path: Path) -> None:
    path = tmp_path / "final_rescore_coco_kpt.pth"
    torch.save(build_state_dict("manifest_rescore_coco.tsv"), path)
    img = _images()[0]
    plain = DEKRPipeline(model, input_size=INPUT).predict_batch([img])[0]
    res = DEKRPipeline(model, input_size=INPUT, rescore_weights=path).predict_batch([img])[0]
    assert len(res) == len(plain) > 0
    np.testing.assert_array_equal(res.keypoints, plain.keypoints)
    net = load_rescore_net(path, "coco17")
    from bupose.dekr.decode import rescore_features

    feats = torch.from_numpy(rescore_features(plain.keypoints.astype(np.float32), "coco17"))
    with torch.no_grad():
        exp = net(feats).numpy().reshape(-1) * plain.scores
    np.testing.assert_allclose(res.scores, exp, rtol=1e-5, atol=1e-7)
    with pytest.raises(CheckpointError, match="layout"):
        load_rescore_net(path, "crowdpose14")
    bad = tmp_path / "bad.pth"
    torch.save({"l1.weight": torch.zeros(3, 3)}, bad)
    with pytest.raises(CheckpointError, match="rescoring-net"):
        DEKRPipeline(model, input_size=INPUT, rescore_weights=bad)


def test_options_and_errors(model: PoseModel) -> None:
    assert default_input_size(model) == 512
    w48 = PoseModel(model.backbone, model.head, head_name="dekr", backbone_name="hrnet_w48", layout=model.layout)
    assert default_input_size(w48) == 640
    cfg = PoseModel(
        model.backbone, model.head, head_name="dekr", backbone_name="x", layout=model.layout, config={"input_size": 320}
    )
    assert default_input_size(cfg) == 320
    with pytest.raises(ValueError, match=r"scales must contain 1\.0"):
        DEKRPipeline(model, scales=(0.5, 2.0))
    with pytest.raises(ValueError, match="batch_mode"):
        DEKRPipeline(model, batch_mode="tile")
    with pytest.raises(TypeError, match="unknown option"):
        DEKRPipeline(model, nms_threshold=0.1)
    pipe = DEKRPipeline(model, input_size=INPUT, nms_num_thre=5)
    assert pipe.decoder.nms_num_thre == 5 and pipe.decoder.stride == 4.0
    with pytest.raises(ValueError, match="image 0"):
        pipe.predict_batch([np.zeros((10, 10), np.uint8)])
    assert pipe.predict_batch([]) == []


def test_load_model_estimator_batch_size_independent(model: PoseModel, tmp_path: Path) -> None:
    from bupose.core.weights import save_safetensors

    path = tmp_path / "m.safetensors"
    save_safetensors(path, model.state_dict(), model.metadata())
    est = load_model("dekr", "hrnet_w18_small", path, input_size=INPUT)
    images: list[Any] = _images()[:3]
    a = est.predict(images, batch_size=1)
    b = est.predict(images, batch_size=3)
    for x, y in zip(a, b, strict=True):
        assert len(x) == len(y)
        np.testing.assert_allclose(x.keypoints, y.keypoints, rtol=0, atol=1e-4)
