"""Meta-tests: every hook spec is documented (exact signature) and exercised by a plugin."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from bupose.core import hookspecs
from bupose.core.plugins import Registry

DOCS = Path(__file__).resolve().parents[3] / "docs" / "plugin-hooks.md"


def signature_text(name: str) -> str:
    """``name(arg: Annotation) -> Return`` as written in hookspecs.py."""
    func = getattr(hookspecs, name)
    params = ", ".join(f"{p.name}: {p.annotation}" for p in inspect.signature(func).parameters.values())
    return f"{name}({params}) -> {inspect.signature(func).return_annotation}"


def test_hook_names_match_module() -> None:
    declared = {n for n in dir(hookspecs) if n.startswith("bupose_") and callable(getattr(hookspecs, n))}
    assert declared == set(hookspecs.HOOK_NAMES)
    assert set(hookspecs.REGISTER_HOOKS) == set(hookspecs.HOOK_NAMES) - {"bupose_register_commands"}


@pytest.mark.skipif(not DOCS.is_file(), reason="docs/ is not part of an installed package")
@pytest.mark.parametrize("name", hookspecs.HOOK_NAMES)
def test_every_hook_documented_with_exact_signature(name: str) -> None:
    text = DOCS.read_text()
    assert signature_text(name) in text, f"docs/plugin-hooks.md must show `{signature_text(name)}`"
    assert inspect.getdoc(getattr(hookspecs, name)), f"{name} needs a docstring"


ALL_HOOKS = """
from bupose.core import hookimpl
from bupose.core.specs import *

CALLED = []

@hookimpl
def bupose_register_backbones(register):
    CALLED.append("backbones")
    register(BackboneSpec(name="m_bb", factory="x:y", summary="s", outputs={"o": FeatureShape(4, 4)}))

@hookimpl
def bupose_register_heads(register):
    CALLED.append("heads")
    register(HeadSpec(name="m_head", factory="x:y", summary="s", layouts=("coco17",)))

@hookimpl
def bupose_register_groupers(register):
    CALLED.append("groupers")
    register(GrouperSpec(name="m_grp", factory="x:y", summary="s"))

@hookimpl
def bupose_register_layouts(register):
    CALLED.append("layouts")
    register(LayoutSpec(name="m_lay", keypoints=("a", "b"), flip_index=(1, 0), sigmas=(0.1, 0.1)))

@hookimpl
def bupose_register_datasets(register):
    CALLED.append("datasets")
    register(DatasetSpec(name="m_ds", factory="x:y", summary="s", layout="m_lay"))

@hookimpl
def bupose_register_ops(register):
    CALLED.append("ops")
    register(OpSpec(name="m_op", implementation="fast", priority=5, factory="x:y"))

@hookimpl
def bupose_register_weights(register):
    CALLED.append("weights")
    register(WeightsSpec(name="m_w", factory="x:y", file_names=("m.pth",), head="m_head"))

@hookimpl
def bupose_register_commands(cli):
    CALLED.append("commands")
    @cli.command("m-cmd")
    def m_cmd():
        pass
"""


def test_every_hook_is_called_and_registers(fake_site: Path, fake_dist) -> None:
    import importlib
    import importlib.metadata as md

    import click

    fake_dist(fake_site, "fake-allhooks", "1.0", {"fakeplug_all": ALL_HOOKS}, {"allhooks": "fakeplug_all"})
    importlib.invalidate_caches()
    reg = Registry().load([ep for ep in md.entry_points(group="bupose") if ep.name == "allhooks"])
    group = click.Group()
    reg.add_commands(group)
    module = importlib.import_module("fakeplug_all")
    assert sorted(module.CALLED) == sorted(k.removeprefix("bupose_register_") for k in hookspecs.HOOK_NAMES)
    expected = {
        "backbones": "m_bb", "heads": "m_head", "groupers": "m_grp",
        "layouts": "m_lay", "datasets": "m_ds", "ops": "m_op/fast", "weights": "m_w",
    }  # fmt: skip
    for kind, name in expected.items():
        assert reg.get(kind, name).distribution == "fake-allhooks"
    assert "m-cmd" in group.commands
    info = next(p for p in reg.plugins if p.name == "allhooks")
    assert info.commands == ["m-cmd"]
