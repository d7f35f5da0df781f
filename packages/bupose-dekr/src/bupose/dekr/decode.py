"""DEKR post-processing: everything between the network outputs and the final poses.

Semantics follow the official test loop (HRNet/DEKR ``tools/valid.py`` with
``lib/core/{inference,nms,match}.py`` and ``lib/utils/rescore.py``), quirks included:

- flip test: heatmaps flipped back and re-indexed with the layout's flip index plus the centre,
  flipped offsets turned into poses, re-indexed, mirrored with ``x' = w - x - 1``, pose maps
  flipped back and averaged with the plain ones;
- centre NMS: max-pool kernel 7/5/3 chosen from the map size, top-``max_num_people`` on the map
  with non-maxima zeroed, then ``score > keypoint_threshold``;
- poses read from the merged pose map at the centre pixels, times ``stride / scale``;
- multi-scale: every scale's merged heatmap up-sampled to the scale-1 input size with
  ``up_interpolate`` and averaged; other scales' centre scores rescaled with ``decrease``;
- pose NMS with the asymmetric area rule and the greedy walk, ranking by mean heat value;
- optional MATCH_HMP (absorb to heatmap peaks, Gaussian refinement), rescoring net,
  back-projection to image pixels.

Only the values the decode needs are computed: the merged joint heatmaps and the pose map are
evaluated at the selected centres and at the heat-lookup pixels instead of over whole maps (the
full heatmap average is only built for MATCH_HMP). The arithmetic is float32 in the official
order, so the discrete decisions are the official ones.

The method-neutral steps are :mod:`bupose.core.algorithms` functions with DEKR's values: peaks
(:func:`~bupose.core.algorithms.maps.find_peaks` with the kernel-by-size rule), flip merge
(:mod:`~bupose.core.algorithms.tta`), bilinear look-ups, pose NMS
(:func:`~bupose.core.algorithms.nms.pose_nms` ranked by heat value), back-projection. What is DEKR's
own lives here: the lazy flip-merged maps, the multi-scale score rescale, MATCH_HMP and the
rescoring features.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import torch

from bupose.core.algorithms.geometry import WarpMeta, back_project
from bupose.core.algorithms.maps import find_peaks, flat_to_xy, pool_kernel
from bupose.core.algorithms.nms import pose_nms
from bupose.core.algorithms.tta import average_maps, bilinear_taps, flip_back, mirror_points, up_interpolate
from bupose.core.poses import Poses
from bupose.core.specs import LayoutSpec

from .options import DECODE_OPTION_NAMES, DEKROptions

__all__ = [
    "DEFAULT_OPTIONS",
    "LAYOUT_DEFAULTS",
    "RESCORE_LIMBS",
    "DEKRDecoder",
    "DecodeTrace",
    "ScaleOutput",
    "center_nms",
    "rescore_features",
    "up_interpolate",
]

DEFAULT_OPTIONS: dict[str, Any] = {
    **{
        f.name: f.default
        for f in fields(DEKROptions)
        if f.name in DECODE_OPTION_NAMES and f.default is not None
    },
    **DEKROptions.layout_defaults["coco17"],
    "stride": 4.0,
}
"""The decoder's defaults: the official COCO values of :class:`~bupose.dekr.options.DEKROptions`'
decoding fields (one table, read from the dataclass) plus the output ``stride``."""

LAYOUT_DEFAULTS: dict[str, dict[str, Any]] = DEKROptions.layout_defaults
"""Per-layout overrides of :data:`DEFAULT_OPTIONS` (the official CrowdPose yaml values); the one
table is :attr:`bupose.dekr.options.DEKROptions.layout_defaults`."""

RESCORE_LIMBS: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "coco17": (
        (0, 0, 1, 1, 2, 3, 4, 5, 5, 5, 6, 6, 7, 8, 11, 11, 12, 13, 14),
        (1, 2, 2, 3, 4, 5, 6, 6, 7, 11, 8, 12, 9, 10, 12, 13, 14, 15, 16),
    ),
    "crowdpose14": (
        (12, 13, 13, 0, 1, 2, 3, 0, 1, 6, 7, 8, 9, 6, 0),
        (13, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 7, 1),
    ),
}
"""Limb pairs of the rescoring features (19 COCO, 15 CrowdPose)."""


@dataclass
class ScaleOutput:
    """Raw network outputs of one image at one test scale.

    ``heatmap`` (J+1, h, w) with the centre last, ``offset`` (2J, h, w) laid out (x0, y0, x1, ...)
    as pixel - joint in output pixels; ``heatmap_flip``/``offset_flip`` are the outputs on the
    flipped, 3-px-shifted input (``None`` without flip test). ``meta`` is that scale's warp.
    """

    scale: float
    heatmap: torch.Tensor
    offset: torch.Tensor
    heatmap_flip: torch.Tensor | None = None
    offset_flip: torch.Tensor | None = None
    meta: WarpMeta | None = None


@dataclass
class DecodeTrace:
    """Intermediate values of one decode (for tests and debugging), official names."""

    merged_center: dict[float, torch.Tensor] = field(default_factory=dict)
    center_index: dict[float, torch.Tensor] = field(default_factory=dict)
    center_score: dict[float, torch.Tensor] = field(default_factory=dict)
    proposals: dict[float, torch.Tensor] = field(default_factory=dict)
    pose_coord: torch.Tensor | None = None
    pose_score_rescaled: torch.Tensor | None = None
    heatval: torch.Tensor | None = None
    heat_score: torch.Tensor | None = None
    keep: list[int] = field(default_factory=list)
    after_nms_poses: np.ndarray | None = None
    after_nms_scores: np.ndarray | None = None
    after_absorb: np.ndarray | None = None
    after_adjust: np.ndarray | None = None
    final_poses: np.ndarray | None = None
    final_scores: np.ndarray | None = None
    rescore_features: np.ndarray | None = None
    rescore_scores_in: np.ndarray | None = None


@contextlib.contextmanager
def _one_thread() -> Any:
    """Run small CPU ops single-threaded (intra-op parallelism only costs on maps this small)."""
    n = torch.get_num_threads()
    if n == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


# --------------------------------------------------------------------------- map helpers
def center_nms(
    center_map: torch.Tensor,
    *,
    max_num_people: int = 30,
    keypoint_threshold: float = 0.01,
    pool_threshold1: float = 300,
    pool_threshold2: float = 200,
) -> tuple[torch.Tensor, torch.Tensor]:
    """DEKR's centre peaks of an (h, w) map: flat indices and scores, in top-k order.

    Max-pool kernel 7/5/3 from the map size; non-maxima are zeroed before the top-k (so they
    outrank negative maxima); only scores above ``keypoint_threshold`` survive.
    """
    h, w = center_map.shape
    k = pool_kernel(h, w, ((pool_threshold1, 7), (pool_threshold2, 5)), 3)
    return find_peaks(center_map, kernel=k, topk=max_num_people, threshold=keypoint_threshold)


def _finite(x: torch.Tensor) -> torch.Tensor:
    """``x`` with NaN/inf set to 0 (a broken output, e.g. an fp16 overflow, must not crash the decode)."""
    # Any NaN/inf makes the sum non-finite; a sum that overflows on finite values only costs the
    # (result-preserving) nan_to_num. One reduction instead of a full boolean map: 4x faster decode.
    return x if bool(torch.isfinite(x.sum())) else torch.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)


class _MergedMaps:
    """Lazy access to one scale's flip-merged heatmap and pose map."""

    def __init__(self, out: ScaleOutput, flip_index_with_center: torch.Tensor, flip: bool) -> None:
        self.heatmap = _finite(out.heatmap.float())
        self.offset = _finite(out.offset.float())
        self.flip = flip
        if flip:
            if out.heatmap_flip is None or out.offset_flip is None:
                raise ValueError("flip test needs heatmap_flip and offset_flip")
            self.heatmap_flip = _finite(out.heatmap_flip.float())
            self.offset_flip = _finite(out.offset_flip.float())
        self.fi = flip_index_with_center
        self.num_joints = self.heatmap.shape[0] - 1
        self.h, self.w = self.heatmap.shape[-2:]

    def center_map(self) -> torch.Tensor:
        c = self.heatmap[-1]
        if self.flip:
            c = average_maps([c, self.heatmap_flip[int(self.fi[-1])].flip(-1)])
        return c

    def full_heatmap(self) -> torch.Tensor:
        """(J+1, h, w) merged heatmap."""
        if not self.flip:
            return self.heatmap
        return average_maps([self.heatmap, flip_back(self.heatmap_flip, self.fi)])

    def heat_values(self, j: torch.Tensor, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Merged joint heatmap values at integer (j, y, x) (broadcast)."""
        v = self.heatmap[j, y, x]
        if self.flip:
            v = (v + self.heatmap_flip[self.fi[j], y, self.w - 1 - x]) / 2.0
        return v

    def poses_at(self, index: torch.Tensor) -> torch.Tensor:
        """(n, J, 2) merged pose-map values (output pixels) at flat centre indices."""
        J, w = self.num_joints, self.w
        cx, cy = flat_to_xy(index, w)
        off = self.offset[:, cy, cx].T.reshape(-1, J, 2)
        loc = torch.stack([cx, cy], dim=1).to(torch.float32)[:, None, :]
        poses = loc - off
        if self.flip:
            fx = w - 1 - cx
            fi = self.fi[:J]
            offf = self.offset_flip[:, cy, fx].T.reshape(-1, J, 2)[:, fi, :]
            locf = torch.stack([fx, cy], dim=1).to(torch.float32)[:, None, :]
            pf = mirror_points(locf - offf, float(w), minus_one=True)
            poses = average_maps([poses, pf])
        return poses


def rescore_features(poses: np.ndarray, layout: str) -> np.ndarray:
    """Rescoring-net input (N, 3L + J) from final poses (N, J, 3) in image pixels.

    Limb vectors and lengths divided by the mean length of limbs #9 and #11 (floored at 1),
    then the per-joint score column. Arithmetic in the dtype of ``poses`` (float32 officially).
    """
    if layout not in RESCORE_LIMBS:
        raise ValueError(f"no rescoring limbs for layout {layout!r}; known: {', '.join(RESCORE_LIMBS)}")
    a, b = (list(t) for t in RESCORE_LIMBS[layout])
    xy = poses[:, :, :2]
    vis = poses[:, :, 2]
    rel = xy[:, a] - xy[:, b]
    sq = rel**2
    length = (sq[:, :, 0] + sq[:, :, 1]) ** 0.5
    norm = (length[:, 9] + length[:, 11]) / 2
    norm = np.where(norm < 1, np.ones_like(norm), norm)
    length = length / norm[:, None]
    rel = rel / norm[:, None, None]
    return np.concatenate([rel.reshape(len(poses), -1), length, vis], axis=1)


def _gaussian_window_fit(
    window: np.ndarray, maxval: Any, init_row: int, init_col: int, sigma: float
) -> tuple[float, float]:
    """Fit ``A exp(-((c - c0)^2 + (r - r0)^2) / (2 s^2))`` to a heatmap window (official pairing).

    The official fit builds its coordinate grid with ``meshgrid(rows, cols)`` and pairs it with the
    row-major window values; that pairing is consistent only for square windows, and is kept as is.
    Returns the fitted (row, col) offsets inside the window; raises on fit failure.
    """
    from scipy.optimize import curve_fit

    n_rows, n_cols = window.shape
    k = np.arange(n_rows * n_cols)
    r_coord = (k // n_rows).astype(np.float64)  # what the official calls y
    c_coord = (k % n_rows).astype(np.float64)  # what the official calls x
    data = np.vstack((r_coord, c_coord))

    def model(d: np.ndarray, amp: float, r0: float, c0: float, s: float) -> np.ndarray:
        r, c = d
        return amp * np.exp(-((c - c0) ** 2 + (r - r0) ** 2) / (2 * s**2))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        popt, _ = curve_fit(model, data, window.ravel(), p0=(maxval, init_row, init_col, sigma), maxfev=300)
    return float(popt[1]), float(popt[2])


# --------------------------------------------------------------------------- decoder
class DEKRDecoder:
    """DEKR decode for one layout: raw outputs at one or more scales -> :class:`Poses`.

    Options (official test-config defaults, see :data:`DEFAULT_OPTIONS`, per-layout
    :data:`LAYOUT_DEFAULTS`): ``nms_thre``, ``nms_num_thre``, ``keypoint_threshold``,
    ``max_num_people``, ``pool_threshold1/2``, ``decrease``, ``match_hmp``, ``adjust_threshold``,
    ``max_absorb_distance``, ``gaussian_kernel``, ``sigma`` (MATCH_HMP initial sigma), ``stride``
    (input pixels per output pixel).
    """

    def __init__(self, layout: str | LayoutSpec, **options: Any) -> None:
        from bupose.core.layouts import get_layout

        layout = self.layout = get_layout(layout)
        unknown = set(options) - set(DEFAULT_OPTIONS)
        if unknown:
            raise TypeError(
                f"DEKRDecoder: unknown option(s) {', '.join(sorted(unknown))}; "
                f"known: {', '.join(sorted(DEFAULT_OPTIONS))}"
            )
        opts = {**DEFAULT_OPTIONS, **LAYOUT_DEFAULTS.get(layout.name, {}), **options}
        self.options = opts
        self.nms_thre = float(opts["nms_thre"])
        self.nms_num_thre = int(opts["nms_num_thre"])
        self.keypoint_threshold = float(opts["keypoint_threshold"])
        self.max_num_people = int(opts["max_num_people"])
        self.pool_threshold1 = float(opts["pool_threshold1"])
        self.pool_threshold2 = float(opts["pool_threshold2"])
        self.decrease = float(opts["decrease"])
        self.match_hmp = bool(opts["match_hmp"])
        self.adjust_threshold = float(opts["adjust_threshold"])
        self.max_absorb_distance = float(opts["max_absorb_distance"])
        self.gaussian_kernel = int(opts["gaussian_kernel"])
        self.sigma = float(opts["sigma"])
        self.stride = float(opts["stride"])
        if self.max_num_people < 1:
            raise ValueError(f"max_num_people must be >= 1, got {self.max_num_people}")
        self.num_joints = layout.num_keypoints
        self.flip_index_with_center = torch.tensor(layout.flip_index_with_center(), dtype=torch.long)

    # ------------------------------------------------------------------ public API
    def __call__(self, outputs: Sequence[ScaleOutput], **kwargs: Any) -> Poses:
        return self.decode(outputs, **kwargs)

    def decode(
        self,
        outputs: Sequence[ScaleOutput],
        *,
        base_size_wh: tuple[int, int] | None = None,
        rescore_net: Callable[[torch.Tensor], torch.Tensor] | None = None,
        trace: DecodeTrace | None = None,
    ) -> Poses:
        """Poses in image pixels for one image from its raw outputs at every test scale.

        Every :class:`ScaleOutput` must carry its ``meta``; one of them must be scale 1.0.
        ``base_size_wh`` (the scale-1 network-input size) defaults to scale 1's ``meta.size_wh``.
        """
        if not outputs:
            raise ValueError("decode needs the outputs of at least one scale")
        outs = sorted(outputs, key=lambda o: -float(o.scale))
        scales = [float(o.scale) for o in outs]
        if 1.0 not in scales:
            raise ValueError(f"DEKR decoding needs scale 1.0 among the test scales, got {scales}")
        if len(set(scales)) != len(scales):
            raise ValueError(f"test scales must be distinct, got {scales}")
        for o in outs:
            if o.meta is None:
                raise ValueError(f"ScaleOutput for scale {o.scale} has no meta (warp geometry)")
            self._check_shapes(o)
        s1 = outs[scales.index(1.0)]
        assert s1.meta is not None
        if base_size_wh is None:
            base_size_wh = s1.meta.size_wh
        last_meta = outs[-1].meta
        assert last_meta is not None
        with _one_thread():
            poses, scores = self.decode_input_pixels(outs, trace=trace)
        if poses.shape[0] == 0:
            return Poses.empty(self.num_joints, self.layout.name)
        final_meta = WarpMeta(last_meta.image_hw, tuple(base_size_wh), last_meta.center, last_meta.scale)
        final = back_project(poses, final_meta)
        final_scores = np.asarray(scores, dtype=np.float32)
        if rescore_net is not None:
            feats = rescore_features(final, self.layout.name)
            if trace is not None:
                trace.rescore_features = feats
                trace.rescore_scores_in = final_scores.copy()
            final_scores = self.apply_rescore(rescore_net, feats, final_scores)
        if trace is not None:
            trace.final_poses = final
            trace.final_scores = final_scores
        return Poses(final, final_scores, self.layout.name)

    @staticmethod
    def apply_rescore(
        net: Callable[[torch.Tensor], torch.Tensor], features: np.ndarray, scores: np.ndarray
    ) -> np.ndarray:
        """Score = net(features) x score, NaN -> 0."""
        param = next(iter(getattr(net, "parameters", lambda: iter(()))()), None)
        device = param.device if param is not None else torch.device("cpu")
        with torch.no_grad():
            pred = net(torch.from_numpy(np.ascontiguousarray(features)).float().to(device))
        out = pred.detach().float().cpu().numpy().reshape(-1) * scores
        out[np.isnan(out)] = 0
        return out

    def decode_input_pixels(
        self, outs: Sequence[ScaleOutput], trace: DecodeTrace | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Poses (K, J, 3) in scale-1 input pixels after pose NMS [and MATCH_HMP], and scores (K,).

        ``outs`` must be sorted by descending scale.
        """
        J = self.num_joints
        merged: list[_MergedMaps] = []
        proposals: list[torch.Tensor] = []
        up_sizes: list[tuple[int, int]] = []
        for o in outs:
            flip = o.heatmap_flip is not None
            mm = _MergedMaps(o, self.flip_index_with_center, flip)
            merged.append(mm)
            reverse_scale = self.stride / float(o.scale)
            up_sizes.append((int(reverse_scale * mm.h), int(reverse_scale * mm.w)))
            cmap = mm.center_map()
            index, score = center_nms(
                cmap,
                max_num_people=self.max_num_people,
                keypoint_threshold=self.keypoint_threshold,
                pool_threshold1=self.pool_threshold1,
                pool_threshold2=self.pool_threshold2,
            )
            pose = reverse_scale * mm.poses_at(index)
            prop = torch.cat([pose, score[:, None, None].expand(-1, J, 1)], dim=2)
            proposals.append(prop)
            if trace is not None:
                s = float(o.scale)
                trace.merged_center[s] = cmap
                trace.center_index[s] = index
                trace.center_score[s] = score
                trace.proposals[s] = prop.clone()
        if len(set(up_sizes)) != 1:
            raise ValueError(f"the scales' heatmaps up-sample to different sizes: {up_sizes}")
        up_size = up_sizes[0]

        # multi-scale score rescale
        i1 = [float(o.scale) for o in outs].index(1.0)
        norm = proposals[i1]
        max_score: Any = norm[:, :, 2].max() if norm.shape[0] else 1
        for i, p in enumerate(proposals):
            if i != i1:
                max_s: Any = p[:, :, 2].max() if p.shape[0] else 1
                p[:, :, 2] = p[:, :, 2] / max_s * max_score * self.decrease
        pose_score = torch.cat([p[:, :, 2:] for p in proposals], dim=0)
        pose_coord = torch.cat([p[:, :, :2] for p in proposals], dim=0)
        if pose_coord.shape[0] == 0:
            return np.zeros((0, J, 3), np.float32), np.zeros((0,), np.float32)

        heatval = self._heat_values(merged, pose_coord, up_size)[:, :, None]
        heat_score = (torch.sum(heatval, dim=1) / J)[:, 0]
        pose_score = pose_score * heatval
        poses = torch.cat([pose_coord, pose_score], dim=2)
        keep = self.pose_nms_keep(pose_coord, heat_score)
        poses = poses[keep]
        hs = heat_score[keep]
        if len(keep) > self.max_num_people:
            hs, top = torch.topk(hs, self.max_num_people)
            poses = poses[top]
        poses_np = poses.numpy()
        scores_np = np.array([p[:, 2].mean() for p in poses_np], dtype=np.float32)
        if trace is not None:
            trace.pose_coord = pose_coord
            trace.pose_score_rescaled = torch.cat([p[:, :, 2] for p in proposals], dim=0)
            trace.heatval = heatval[:, :, 0]
            trace.heat_score = heat_score
            trace.keep = list(keep)
            trace.after_nms_poses = poses_np.copy()
            trace.after_nms_scores = scores_np.copy()
        if self.match_hmp and poses_np.shape[0]:
            heatmap_avg = self._heatmap_avg(merged, up_size)
            poses_np = self._absorb(poses_np, heatmap_avg)
            if trace is not None:
                trace.after_absorb = poses_np.copy()
            poses_np = self._adjust(poses_np, heatmap_avg)
            if trace is not None:
                trace.after_adjust = poses_np.copy()
        return poses_np, scores_np

    # ------------------------------------------------------------------ internals
    def _check_shapes(self, o: ScaleOutput) -> None:
        J = self.num_joints
        if o.heatmap.ndim != 3 or o.heatmap.shape[0] != J + 1:
            raise ValueError(
                f"scale {o.scale}: heatmap must be (J+1={J + 1}, h, w) for layout {self.layout.name}, "
                f"got {tuple(o.heatmap.shape)}"
            )
        if o.offset.shape != (2 * J, *o.heatmap.shape[1:]):
            raise ValueError(
                f"scale {o.scale}: offset must be (2J={2 * J}, h, w) = "
                f"{(2 * J, *o.heatmap.shape[1:])}, got {tuple(o.offset.shape)}"
            )
        if (o.heatmap_flip is None) != (o.offset_flip is None):
            raise ValueError(f"scale {o.scale}: give both heatmap_flip and offset_flip, or neither")
        if o.heatmap_flip is not None and (
            o.heatmap_flip.shape != o.heatmap.shape or o.offset_flip.shape != o.offset.shape  # type: ignore[union-attr]
        ):
            raise ValueError(f"scale {o.scale}: flipped outputs must have the plain outputs' shapes")

    def _heat_values(
        self, merged: list[_MergedMaps], pose_coord: torch.Tensor, up_size: tuple[int, int]
    ) -> torch.Tensor:
        """heatmap_avg[j] at (floor(y), floor(x)) clamped, without building heatmap_avg."""
        H, W = up_size
        N, J, _ = pose_coord.shape
        yb = torch.clamp(torch.floor(pose_coord[:, :, 1]), 0, H - 1).long()
        xl = torch.clamp(torch.floor(pose_coord[:, :, 0]), 0, W - 1).long()
        jj = torch.arange(J).expand(N, J)
        total: torch.Tensor | int = 0
        for mm in merged:
            kh, kw = int(H / mm.h), int(W / mm.w)
            oh, ow = H - kh + 1, W - kw + 1
            ys = torch.clamp(yb, max=oh - 1)
            xs = torch.clamp(xl, max=ow - 1)
            y0, y1, ly0, ly1 = bilinear_taps(oh, mm.h, ys, align_corners=True)
            x0, x1, lx0, lx1 = bilinear_taps(ow, mm.w, xs, align_corners=True)
            v00 = mm.heat_values(jj, y0, x0)
            v01 = mm.heat_values(jj, y0, x1)
            v10 = mm.heat_values(jj, y1, x0)
            v11 = mm.heat_values(jj, y1, x1)
            val = (v00 * lx0 + v01 * lx1) * ly0 + (v10 * lx0 + v11 * lx1) * ly1
            total = total + val
        assert isinstance(total, torch.Tensor)
        return total / len(merged)

    def _heatmap_avg(self, merged: list[_MergedMaps], up_size: tuple[int, int]) -> torch.Tensor:
        return average_maps([up_interpolate(mm.full_heatmap()[None], up_size) for mm in merged])

    def pose_nms_keep(self, pose_coord: torch.Tensor, heat_score: torch.Tensor) -> list[int]:
        """Indices kept by the official greedy pose NMS (ranked by mean heat value), in keep order."""
        return pose_nms(pose_coord, heat_score, ratio=self.nms_thre, min_joints=self.nms_num_thre)

    def _absorb(self, poses: np.ndarray, heatmap_avg: torch.Tensor) -> np.ndarray:
        """MATCH_HMP step 1: every joint jumps to the nearest top-k 5x5 peak within range."""
        kpt = heatmap_avg[0, :-1]
        J, _h, w = kpt.shape
        ind, _ = find_peaks(kpt, kernel=5, topk=self.max_num_people)
        peaks = torch.stack(flat_to_xy(ind, w), dim=2).float()  # (J, K, 2)
        p = torch.tensor(poses)
        xy = p[:, :, :2]  # (N, J, 2)
        d = (xy[:, :, None, :] - peaks[None]).pow(2).sum(3).sqrt()  # (N, J, K)
        best = torch.argmin(d, dim=2)
        bd = torch.gather(d, 2, best[..., None])[..., 0]
        target = peaks[torch.arange(J)[None, :], best]  # (N, J, 2)
        move = bd < self.max_absorb_distance
        xy[move] = target[move]
        return p.numpy()

    def _adjust(self, poses: np.ndarray, heatmap_avg: torch.Tensor) -> np.ndarray:
        """MATCH_HMP step 2: Gaussian refinement of confident joints (cached per rounded position)."""
        det = heatmap_avg[0, :-1].numpy()
        n = self.gaussian_kernel
        ans = poses.copy()
        half = np.float32(0.5)
        for j in range(ans.shape[1]):
            cache: dict[tuple[int, int], tuple[float, float]] = {}
            hm = det[j]
            H, W = hm.shape
            for p in range(ans.shape[0]):
                if not ans[p, j, 2] > self.adjust_threshold:
                    continue
                xx = int(ans[p, j, 1] + half)  # row
                yy = int(ans[p, j, 0] + half)  # column
                if (xx, yy) in cache:
                    ans[p, j, 1], ans[p, j, 0] = cache[(xx, yy)]
                    continue
                r = min(max(0, xx), H - 1)
                c = min(max(0, yy), W - 1)
                r_lo, r_hi = max(0, r - n), min(H - 1, r + n)
                c_lo, c_hi = max(0, c - n), min(W - 1, c + n)
                window = hm[r_lo : r_hi + 1, c_lo : c_hi + 1]
                try:
                    dr, dc = _gaussian_window_fit(window, hm[r, c], r - r_lo, c - c_lo, self.sigma)
                except Exception:  # noqa: BLE001 - a failed fit leaves the joint unchanged (official)
                    continue
                ans[p, j, 1] = r_lo + dr
                ans[p, j, 0] = c_lo + dc
                cache[(xx, yy)] = (r_lo + dr, c_lo + dc)
        return ans

    # ------------------------------------------------------------------ batch helper
    def decode_batch(
        self,
        batch: Sequence[Sequence[ScaleOutput]],
        *,
        rescore_net: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> list[Poses]:
        """Decode several images (each a list of per-scale outputs)."""
        return [self.decode(o, rescore_net=rescore_net) for o in batch]

    def describe(self) -> Mapping[str, Any]:
        return dict(self.options)
