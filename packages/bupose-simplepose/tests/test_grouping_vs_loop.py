"""The vectorised grouping equals the official-style Python loop (bench/official_grouping.py) on
synthetic crowded scenes: same peaks, connections, subset records, keypoints and scores."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "bench"))

from bench_grouping import dense_scene
from official_grouping import find_connections_loop, find_peaks_loop, find_people_loop

from bupose.simplepose.grouping import LimbGroupingParams, assemble_people, find_peaks, score_limbs


@pytest.mark.parametrize(("people", "seed", "remove_recon"), [(6, 0, 0), (9, 1, 0), (6, 2, 1)])
def test_fast_equals_loop(people: int, seed: int, remove_recon: int) -> None:
    heat, limbs = dense_scene(people, seed=seed, cell=(30, 56))
    # overlap neighbours so that limbs cross people, merges and contested joints happen
    heat = np.maximum(heat, np.roll(heat, 17, axis=1) * 0.9)
    limbs = np.maximum(limbs, np.roll(limbs, 17, axis=1) * 0.9)
    params = LimbGroupingParams(remove_recon=remove_recon)
    peaks = find_peaks_loop(heat)
    cand_loop = np.array([p for ps in peaks for p in ps], dtype=np.float64)
    cand, part = find_peaks(heat)
    np.testing.assert_array_equal(cand, cand_loop)
    conns_loop, special_loop = find_connections_loop(peaks, limbs, heat.shape[0])
    conns, special = score_limbs(cand, part, limbs, heat.shape[0], params)
    assert special == special_loop
    for k, (c, cl) in enumerate(zip(conns, conns_loop, strict=True)):
        np.testing.assert_array_equal(c, np.asarray(cl, dtype=np.float64).reshape(-1, 6), err_msg=f"limb {k}")
    subset_loop, _ = find_people_loop(conns_loop, special_loop, peaks, remove_recon=remove_recon)
    subset = assemble_people(conns, special, cand, params)
    assert subset.shape[0] > 0
    np.testing.assert_array_equal(subset, subset_loop)
