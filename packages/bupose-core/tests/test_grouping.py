"""Groupers resolved at run time: Candidates, single_person, resolution rules and their errors;
the spec fields behind them; `bupose list heads --verbose` and `bupose run --help` for a plugin head."""

from __future__ import annotations

import importlib
import importlib.metadata as md
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bupose.core.grouping import (
    Candidates,
    GroupingError,
    SinglePersonGrouper,
    build_grouper,
    check_candidates,
    compatible_groupers,
    resolve_grouper,
)
from bupose.core.plugins import Registry, UnknownComponentError
from bupose.core.specs import BackboneSpec, FeatureShape, GrouperSpec, HeadSpec, InvalidSpecError

PLUGIN = """
from dataclasses import dataclass, field
from bupose.core import hookimpl, HeadSpec, GrouperSpec

@dataclass(frozen=True)
class FakeOptions:
    depth: int = field(default=3, metadata={"help": "how deep to look"})
    mode: str = field(default="fast", metadata={"help": "how to look"})

@hookimpl
def bupose_register_heads(register):
    register(HeadSpec(name="limbhead", factory="fakeplug_grp_impl:Head", summary="limb maps", layouts=("coco17",),
                      grouper="limbs", candidate_fields=("limb_heatmaps",), options="fakeplug_grp:FakeOptions"))
    register(HeadSpec(name="peakhead", factory="fakeplug_grp_impl:Head", summary="peaks only", layouts=("coco17",),
                      grouper="single_person"))
    register(HeadSpec(name="posehead", factory="fakeplug_grp_impl:Head", summary="whole poses", layouts=("coco17",)))

@hookimpl
def bupose_register_groupers(register):
    register(GrouperSpec(name="limbs", factory="fakeplug_grp:Limbs", summary="limb assembly",
                         requires=("limb_heatmaps",)))
    register(GrouperSpec(name="crowd_only", factory="fakeplug_grp:Limbs", summary="x", layouts=("crowdpose14",)))

class Limbs:
    def __init__(self, layout, **options):
        self.layout, self.options = layout, options
    def __call__(self, candidates):
        raise NotImplementedError
"""


@pytest.fixture
def registry(fake_site: Path, fake_dist) -> Registry:
    fake_dist(fake_site, "fake-grp", "1.0", {"fakeplug_grp": PLUGIN, "fakeplug_grp_impl": "import torch\n"}, {"grp": "fakeplug_grp"})
    importlib.invalidate_caches()
    return Registry().load([ep for ep in md.entry_points(group="bupose") if ep.name == "grp"])


def _cands(scores: list[list[float]]) -> Candidates:
    xy = [np.arange(2 * len(s), dtype=float).reshape(-1, 2) + 10 * j for j, s in enumerate(scores)]
    return Candidates("coco17", xy, [np.array(s) for s in scores])


def test_single_person_takes_the_best_candidate_of_each_joint() -> None:
    scores = [[0.2, 0.9, 0.1]] + [[0.5]] * 15 + [[]]
    poses = SinglePersonGrouper("coco17")(_cands(scores))
    assert len(poses) == 1 and poses.layout == "coco17"
    np.testing.assert_allclose(poses.keypoints[0, 0], [2.0, 3.0, 0.9])  # second candidate of joint 0
    np.testing.assert_allclose(poses.keypoints[0, 16], [0, 0, 0])  # no candidate
    assert poses.scores[0] == pytest.approx((0.9 + 15 * 0.5) / 17)
    strict = SinglePersonGrouper("coco17", min_score=0.6)(_cands(scores))
    assert strict.keypoints[0, 1, 2] == 0 and strict.keypoints[0, 0, 2] == 0.9
    assert len(SinglePersonGrouper("coco17")(_cands([[]] * 17))) == 0
    with pytest.raises(ValueError, match="17 joints"):
        SinglePersonGrouper("coco17")(_cands([[1.0]] * 14))


def test_candidates_validate_shapes() -> None:
    with pytest.raises(ValueError, match="joint 0 has 2 positions but 1 scores"):
        Candidates("coco17", [np.zeros((2, 2))], [np.zeros(1)])
    with pytest.raises(ValueError, match="field 'tags', joint 0"):
        Candidates("coco17", [np.zeros((2, 2))], [np.zeros(2)], fields={"tags": [np.zeros((3, 1))]})
    with pytest.raises(ValueError, match=r"map 'limbs' must be \(C, h, w\)"):
        Candidates("coco17", [], [], maps={"limbs": np.zeros((4, 4))})
    c = Candidates("coco17", [np.zeros((1, 2))], [np.ones(1)], maps={"limb_heatmaps": np.zeros((1, 4, 4))})
    assert c.provides() == {"limb_heatmaps"}
    check_candidates(c, ("limb_heatmaps",), "limbs")
    with pytest.raises(GroupingError, match="needs candidate field"):
        check_candidates(c, ("tags",), "ae")


def test_builtin_grouper_is_registered_and_built() -> None:
    reg = Registry().load([])
    spec = reg.get("groupers", "single_person")
    assert spec.distribution == "bupose-core"
    assert isinstance(build_grouper("single_person", "crowdpose14", registry=reg), SinglePersonGrouper)
    with pytest.raises(UnknownComponentError, match="Did you mean 'single_person'"):
        build_grouper("single_persn", "coco17", registry=reg)


def test_resolution_rules(registry: Registry) -> None:
    g, spec = resolve_grouper("limbhead", None, "coco17", registry=registry, options={"k": 1})
    assert spec is not None and spec.name == "limbs" and g.options == {"k": 1}
    g, spec = resolve_grouper("peakhead", None, "coco17", registry=registry)
    assert isinstance(g, SinglePersonGrouper)
    g, spec = resolve_grouper("limbhead", "single_person", "coco17", registry=registry)  # needs nothing extra
    assert isinstance(g, SinglePersonGrouper)
    assert resolve_grouper("posehead", None, "coco17", registry=registry) == (None, None)
    with pytest.raises(GroupingError, match="head 'posehead' takes no grouper"):
        resolve_grouper("posehead", "single_person", "coco17", registry=registry)
    with pytest.raises(GroupingError) as info:
        resolve_grouper("peakhead", "limbs", "coco17", registry=registry)
    assert "needs candidate field(s) limb_heatmaps" in str(info.value)
    assert "groupers that work with it: single_person" in str(info.value)  # crowd_only: other layout
    with pytest.raises(GroupingError, match="supports layouts crowdpose14"):
        resolve_grouper("peakhead", "crowd_only", "coco17", registry=registry)
    with pytest.raises(UnknownComponentError, match="unknown grouper 'limbz'"):
        resolve_grouper("limbhead", "limbz", "coco17", registry=registry)
    assert compatible_groupers("peakhead", "coco17", registry=registry) == ["single_person"]
    assert compatible_groupers("limbhead", registry=registry) == ["crowd_only", "limbs", "single_person"]
    assert compatible_groupers("posehead", registry=registry) == []


def test_spec_fields_are_validated() -> None:
    with pytest.raises(InvalidSpecError, match="options must be 'module:attr'"):
        HeadSpec(name="h", factory="a:b", layouts=("coco17",), options="nocolon")
    with pytest.raises(InvalidSpecError, match="candidate_fields need a default grouper"):
        HeadSpec(name="h", factory="a:b", layouts=("coco17",), candidate_fields=("tags",))
    with pytest.raises(InvalidSpecError, match="requires must be identifiers"):
        GrouperSpec(name="g", factory="a:b", requires=("not ok",))
    for bad in (0, -32, 2.0, True):
        with pytest.raises(InvalidSpecError, match="size_divisibility must be a positive int"):
            BackboneSpec(name="b", factory="a:b", outputs={"x": FeatureShape(4, 4)}, size_divisibility=bad)
    assert BackboneSpec(name="b", factory="a:b", outputs={"x": FeatureShape(4, 4)}).size_divisibility == 1


def _bupose(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-c", "import sys\nfrom bupose.core.cli import main\ntry:\n    main(sys.argv[1:])\n"
         "except SystemExit as e:\n    code = e.code\nelse:\n    code = 0\n"
         "assert 'torch' not in sys.modules, 'torch was imported'\nsys.exit(code)", *args],
        capture_output=True, text=True, timeout=120, env={**os.environ, **env},
    )  # fmt: skip


def test_list_heads_verbose_shows_options_and_grouping_without_torch(registry: Registry) -> None:
    proc = _bupose("list", "heads", "--verbose", BUPOSE_LOAD_PLUGINS="grp")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "grouping: grouper 'limbs' by default; --grouper may pick: single_person" in out
    assert "(candidates carry: limb_heatmaps)" in out
    assert "depth (int, default 3)" in out and "how deep to look" in out and "mode (str, default fast)" in out
    assert "grouping: forms people itself (no --grouper)" in out and "test options: none declared" in out
    assert "not installed (first-party): centergroup (bupose-centergroup)" in out


def test_run_help_lists_installed_and_installable_heads_and_one_heads_options(registry: Registry) -> None:
    proc = _bupose("run", "--help", BUPOSE_LOAD_PLUGINS="grp")
    assert proc.returncode == 0, proc.stderr
    installed, _, rest = proc.stdout.partition("Not installed (first-party packages")
    assert "Installed heads:" in installed and "limbhead" in installed and "posehead" in installed
    assert "dekr" not in installed, "a head that is not installed must not be listed as installed"
    assert "dekr (bupose-dekr)" in rest
    proc = _bupose("run", "--head", "limbhead", "--help", BUPOSE_LOAD_PLUGINS="grp")
    assert proc.returncode == 0, proc.stderr
    assert "Head 'limbhead':" in proc.stdout and "depth (int, default 3)" in proc.stdout
    proc = _bupose("run", "--head=limbhed", "--help", BUPOSE_LOAD_PLUGINS="grp")
    assert "Did you mean 'limbhead'?" in proc.stdout


BACKBONES = """
import torch
from bupose.core import hookimpl, BackboneSpec, FeatureShape
from bupose.core.model import Backbone

class Plain(Backbone):
    def output_shape(self):
        return {"x": FeatureShape(4, 4)}
    def forward(self, x):
        return {"x": torch.zeros(x.shape[0], 4, x.shape[2] // 4, x.shape[3] // 4)}

class Declares16(Plain):
    size_divisibility = 16

@hookimpl
def bupose_register_backbones(register):
    register(BackboneSpec(name="div32", factory="fakeplug_bb:Plain", summary="s", outputs={"x": FeatureShape(4, 4)},
                          size_divisibility=32))
    register(BackboneSpec(name="clash16", factory="fakeplug_bb:Declares16", summary="s",
                          outputs={"x": FeatureShape(4, 4)}, size_divisibility=32))
"""


def test_built_backbone_exposes_the_spec_size_divisibility(fake_site: Path, fake_dist) -> None:
    from bupose.core.model import build_backbone

    fake_dist(fake_site, "fake-bb", "1.0", {"fakeplug_bb": BACKBONES}, {"bb": "fakeplug_bb"})
    importlib.invalidate_caches()
    reg = Registry().load([ep for ep in md.entry_points(group="bupose") if ep.name == "bb"])
    assert build_backbone("div32", registry=reg).size_divisibility == 32
    with pytest.raises(ValueError, match="declares size_divisibility 16, its spec 32"):
        build_backbone("clash16", registry=reg)
