"""CrowdPose evaluation against an independent, straightforward re-statement of crowdposetools
semantics (Jeff-sjtu/CrowdPose ``crowdpose-api/PythonAPI/crowdposetools/cocoeval.py``): 14 sigmas,
OKS scale and GT area ranges from bbox w*h*0.53, maxDets 20, E/M/H by crowdIndex < 0.2 / < 0.8 as
round(mean(precision[..., area all, :]), 4) with -1 entries included."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bupose.core.cli.eval import eval_command
from bupose.core.eval import CROWDPOSE_KEYS, available_engines, evaluate

SIGMAS = np.array([0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89, 0.79, 0.79]) / 10.0
T = np.linspace(0.5, 0.95, 10)
R = np.linspace(0.0, 1.0, 101)
AREAS = [(0.0, 1e10), (32.0**2, 96.0**2), (96.0**2, 1e10)]


def reference(gt: dict, results: list[dict]) -> dict[str, float]:
    """crowdposetools numbers, written from the algorithm description with plain loops."""
    dts = [dict(r) for r in results]
    if dts and dts[0].get("bbox"):
        for i, d in enumerate(dts):
            d["area"] = d["bbox"][2] * d["bbox"][3]
            d["id"] = i + 1
    else:
        for i, d in enumerate(dts):
            xs, ys = d["keypoints"][0::3], d["keypoints"][1::3]
            d["area"] = (max(xs) - min(xs)) * (max(ys) - min(ys))
            d["id"] = i + 1
    gts_by_img: dict[int, list[dict]] = {}
    for g in gt["annotations"]:
        gts_by_img.setdefault(g["image_id"], []).append(g)
    dts_by_img: dict[int, list[dict]] = {}
    for d in dts:
        if d["category_id"] == 1:
            dts_by_img.setdefault(d["image_id"], []).append(d)

    def oks(dlist: list[dict], glist: list[dict]) -> np.ndarray:
        out = np.zeros((len(dlist), len(glist)))
        for j, g in enumerate(glist):
            gk = np.array(g["keypoints"], dtype=float)
            xg, yg, vg = gk[0::3], gk[1::3], gk[2::3]
            bx, by, bw, bh = g["bbox"]
            s = bh * bw * 0.53
            for i, d in enumerate(dlist):
                dk = np.array(d["keypoints"], dtype=float)
                xd, yd = dk[0::3], dk[1::3]
                if np.count_nonzero(vg > 0) > 0:
                    dx, dy = xd - xg, yd - yg
                else:
                    dx = np.maximum(0, (bx - bw) - xd) + np.maximum(0, xd - (bx + 2 * bw))
                    dy = np.maximum(0, (by - bh) - yd) + np.maximum(0, yd - (by + 2 * bh))
                e = (dx**2 + dy**2) / (2 * SIGMAS) ** 2 / (s + np.spacing(1)) / 2
                if np.count_nonzero(vg > 0) > 0:
                    e = e[vg > 0]
                out[i, j] = np.sum(np.exp(-e)) / e.shape[0]
        return out

    def run(img_ids: list[int]) -> tuple[np.ndarray, np.ndarray]:
        precision = -np.ones((len(T), len(R), len(AREAS)))
        recall = -np.ones((len(T), len(AREAS)))
        per_area: list[list[tuple]] = [[] for _ in AREAS]
        for img in sorted(set(img_ids)):
            glist = gts_by_img.get(img, [])
            dlist = sorted(dts_by_img.get(img, []), key=lambda d: -d["score"])[:20]  # stable
            if not glist and not dlist:
                continue
            ious = oks(dlist, glist) if glist and dlist else None
            for a, (lo, hi) in enumerate(AREAS):
                ign = [
                    bool(g["iscrowd"] or g["num_keypoints"] == 0 or not lo <= g["bbox"][2] * g["bbox"][3] * 0.53 <= hi)
                    for g in glist
                ]
                gorder = sorted(range(len(glist)), key=lambda j: ign[j])  # stable: ignored last
                dt_match = np.zeros((len(T), len(dlist)))
                dt_ign = np.zeros((len(T), len(dlist)), dtype=bool)
                for t, thr in enumerate(T):
                    taken: set[int] = set()
                    for i in range(len(dlist)):
                        best, m = min(thr, 1 - 1e-10), -1
                        for j in gorder:
                            if j in taken and not glist[j]["iscrowd"]:
                                continue
                            if m > -1 and not ign[m] and ign[j]:
                                break
                            if ious[i, j] < best:
                                continue
                            best, m = ious[i, j], j
                        if m == -1:
                            continue
                        taken.add(m)
                        dt_match[t, i] = 1
                        dt_ign[t, i] = ign[m]
                for i, d in enumerate(dlist):
                    if not lo <= d["area"] <= hi:
                        dt_ign[:, i] |= dt_match[:, i] == 0
                per_area[a].append(([d["score"] for d in dlist], dt_match, dt_ign, np.count_nonzero(~np.array(ign, dtype=bool))))
        for a in range(len(AREAS)):
            items = per_area[a]
            if not items:
                continue
            npig = sum(it[3] for it in items)
            if npig == 0:
                continue
            scores = np.concatenate([np.asarray(it[0], dtype=float) for it in items])
            order = np.argsort(-scores, kind="mergesort")
            match = np.concatenate([it[1] for it in items], axis=1)[:, order]
            ignd = np.concatenate([it[2] for it in items], axis=1)[:, order]
            for t in range(len(T)):
                tp = np.cumsum((match[t] > 0) & ~ignd[t]).astype(float)
                fp = np.cumsum((match[t] == 0) & ~ignd[t]).astype(float)
                rc = tp / npig
                pr = list(tp / (fp + tp + np.spacing(1)))
                recall[t, a] = rc[-1] if len(tp) else 0
                for i in range(len(pr) - 1, 0, -1):
                    pr[i - 1] = max(pr[i - 1], pr[i])
                q = np.zeros(len(R))
                for ri, pi in enumerate(np.searchsorted(rc, R, side="left")):
                    if pi < len(pr):
                        q[ri] = pr[pi]
                precision[t, :, a] = q
        return precision, recall

    def mean_valid(x: np.ndarray) -> float:
        v = x[x > -1]
        return float(np.mean(v)) if v.size else -1.0

    all_ids = [img["id"] for img in gt["images"]]
    p, r = run(all_ids)
    out = {
        "AP": mean_valid(p[:, :, 0]), "AP50": mean_valid(p[0, :, 0]), "AP75": mean_valid(p[5, :, 0]),
        "AR": mean_valid(r[:, 0]), "AR50": mean_valid(r[0, 0]), "AR75": mean_valid(r[5, 0]),
    }  # fmt: skip
    groups = {"APE": [], "APM": [], "APH": []}
    for img in gt["images"]:
        c = img["crowdIndex"]
        groups["APE" if c < 0.2 else "APM" if c < 0.8 else "APH"].append(img["id"])
    for key, ids in groups.items():
        out[key] = round(float(np.mean(run(ids)[0][:, :, 0])), 4) if ids else -1.0
    return out


def make_crowdpose(seed: int, num_images: int = 40, hard: bool = True) -> tuple[dict, list[dict]]:
    rng = np.random.default_rng(seed)
    k = 14
    images, anns, dets = [], [], []
    aid = 1
    for i in range(1, num_images + 1):
        ci = float(rng.random()) if hard else float(rng.uniform(0, 0.79))
        images.append({"id": i, "file_name": f"{100000 + i}.jpg", "width": 400, "height": 400, "crowdIndex": ci})
        for _ in range(int(rng.integers(0, 5))):
            w, h = rng.uniform(10, 250, 2)
            x0, y0 = rng.uniform(0, 150, 2)
            kp = np.zeros((k, 3))
            kp[:, 0] = x0 + rng.uniform(0, w, k)
            kp[:, 1] = y0 + rng.uniform(0, h, k)
            kp[:, 2] = rng.choice([0, 1, 2], k, p=[0.25, 0.25, 0.5])
            kp[kp[:, 2] == 0, :2] = 0
            anns.append(
                {"id": aid, "image_id": i, "category_id": 1, "keypoints": kp.reshape(-1).round(2).tolist(),
                 "num_keypoints": int((kp[:, 2] == 2).sum()), "bbox": [float(x0), float(y0), float(w), float(h)],
                 "iscrowd": int(rng.random() < 0.05)}
            )  # fmt: skip
            aid += 1
            for _ in range(int(rng.integers(0, 3))):
                d = kp.copy()
                d[:, :2] = np.where(kp[:, 2:] > 0, kp[:, :2], [x0, y0]) + rng.normal(0, rng.choice([1, 5, 15]), (k, 2))
                d[:, 2] = rng.random(k)
                dets.append({"image_id": i, "category_id": 1, "keypoints": d.reshape(-1).tolist(),
                             "score": float(np.round(rng.random(), 2))})  # fmt: skip
        for _ in range(int(rng.integers(0, 3))):
            d = np.concatenate([rng.uniform(0, 400, (k, 2)), np.ones((k, 1))], axis=1)
            dets.append({"image_id": i, "category_id": 1, "keypoints": d.reshape(-1).tolist(), "score": float(rng.random())})
    gt = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "person"}]}
    return gt, dets


@pytest.mark.parametrize("engine", available_engines())
@pytest.mark.parametrize("seed", [0, 1])
def test_crowdpose_matches_reference(engine: str, seed: int, tmp_path: Path) -> None:
    gt, dets = make_crowdpose(seed)
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    ref = reference(gt, dets)
    got = evaluate(dets, tmp_path / "gt.json", "crowdpose14", engine=engine)
    assert list(got) == list(CROWDPOSE_KEYS)
    for key in CROWDPOSE_KEYS:
        assert abs(got[key] - ref[key]) <= 1e-9, (key, got[key], ref[key])
    assert 0.05 < got["AP"] < 0.95


def test_crowdpose_ignores_area_field_and_uses_bbox() -> None:
    gt, dets = make_crowdpose(4)
    with_area = json.loads(json.dumps(gt))
    for a in with_area["annotations"]:
        a["area"] = 1.0  # crowdposetools never reads it
    assert evaluate(dets, with_area, "crowdpose14") == evaluate(dets, gt, "crowdpose14")


def test_empty_hard_subset_gives_minus_one_and_bbox_results() -> None:
    gt, dets = make_crowdpose(6, hard=False)
    for d in dets:
        xs, ys = d["keypoints"][0::3], d["keypoints"][1::3]
        d["bbox"] = [min(xs), min(ys), (max(xs) - min(xs)) * 0.7, max(ys) - min(ys)]
    got = evaluate(dets, gt, "crowdpose14")
    ref = reference(gt, dets)
    assert got["APH"] == -1.0 == ref["APH"]
    for key in CROWDPOSE_KEYS:
        assert abs(got[key] - ref[key]) <= 1e-9, key


def test_crowdpose_needs_crowd_index() -> None:
    gt, dets = make_crowdpose(2)
    del gt["images"][3]["crowdIndex"]
    with pytest.raises(ValueError, match="image id 4 has no numeric 'crowdIndex'"):
        evaluate(dets, gt, "crowdpose14")


def test_cli_crowdpose_table_and_json(tmp_path: Path) -> None:
    from click.testing import CliRunner

    gt, dets = make_crowdpose(3)
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "res.json").write_text(json.dumps(dets))
    out = tmp_path / "m.json"
    res = CliRunner().invoke(
        eval_command,
        ["--results", str(tmp_path / "res.json"), "--annotations", str(tmp_path / "gt.json"),
         "--layout", "crowdpose14", "--output", str(out)],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "crowd=  hard" in res.output
    metrics = json.loads(out.read_text())
    assert list(metrics) == list(CROWDPOSE_KEYS)
    assert metrics == pytest.approx(reference(gt, dets), abs=1e-9)
