from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bupose.core.plugins import Registry, UnknownComponentError, reset_registry

GOOD = """
from bupose.core import hookimpl, HeadSpec, BackboneSpec, FeatureShape

@hookimpl
def bupose_register_heads(register):
    register(HeadSpec(name="lazyhead", factory="fakeplug_good_impl:Head", summary="s", layouts=("coco17",)))

@hookimpl
def bupose_register_backbones(register):
    register(BackboneSpec(name="lazybb", factory="fakeplug_good_impl:BB", summary="s",
                          outputs={"x": FeatureShape(8, 4)}))

@hookimpl
def bupose_register_commands(cli):
    @cli.command("fake-hello")
    def hello():
        print("hello from fake")
"""
IMPL_THAT_RAISES = "raise RuntimeError('factory module imported: listing must stay lazy')\n"
BROKEN_IMPORT = "raise ImportError('this plugin is broken on purpose')\n"
BROKEN_HOOK = """
from bupose.core import hookimpl

@hookimpl
def bupose_register_heads(register):
    raise ValueError('hook exploded on purpose')
"""
DUPLICATE = """
from bupose.core import hookimpl, HeadSpec

@hookimpl
def bupose_register_heads(register):
    register(HeadSpec(name="lazyhead", factory="x:y", summary="dup", layouts=("coco17",)))
"""


@pytest.fixture
def plugins(fake_site: Path, fake_dist) -> Path:
    make_fake_distribution = fake_dist
    make_fake_distribution(
        fake_site, "fake-good", "1.2.3",
        {"fakeplug_good": GOOD, "fakeplug_good_impl": IMPL_THAT_RAISES}, {"good": "fakeplug_good"},
    )  # fmt: skip
    make_fake_distribution(fake_site, "fake-broken", "0.1", {"fakeplug_broken": BROKEN_IMPORT}, {"broken": "fakeplug_broken"})
    make_fake_distribution(fake_site, "fake-hook", "0.2", {"fakeplug_hook": BROKEN_HOOK}, {"hookfail": "fakeplug_hook"})
    return fake_site


def _fake_eps() -> list:
    import importlib
    import importlib.metadata as md

    importlib.invalidate_caches()
    return [ep for ep in md.entry_points(group="bupose") if ep.name in {"good", "broken", "hookfail", "dup"}]


def test_failures_are_recorded_and_others_keep_working(plugins: Path) -> None:
    reg = Registry().load(_fake_eps())
    assert "lazyhead" in reg.names("heads")
    assert "lazybb" in reg.names("backbones")
    assert "coco17" in reg.names("layouts")  # core built-ins unaffected
    by_plugin = {e.plugin: e for e in reg.errors}
    assert by_plugin["broken"].stage == "import"
    assert "broken on purpose" in by_plugin["broken"].error
    assert "Traceback" in by_plugin["broken"].traceback
    assert by_plugin["hookfail"].stage == "bupose_register_heads"
    assert "hook exploded" in by_plugin["hookfail"].error
    spec = reg.get("heads", "lazyhead")
    assert (spec.distribution, spec.version) == ("fake-good", "1.2.3")
    assert "fakeplug_good_impl" not in sys.modules, "listing must not import factory modules"


def test_duplicate_name_names_both_distributions(plugins: Path, fake_dist) -> None:
    make_fake_distribution = fake_dist
    make_fake_distribution(plugins, "fake-dup", "9.9", {"fakeplug_dup": DUPLICATE}, {"dup": "fakeplug_dup"})
    reg = Registry().load(_fake_eps())
    dup = [e for e in reg.errors if "registered twice" in e.error]
    assert len(dup) == 1
    assert "fake-good 1.2.3" in dup[0].error and "fake-dup 9.9" in dup[0].error
    # plugins load in entry-point name order: "dup" registered first and keeps the name
    assert reg.get("heads", "lazyhead").distribution == "fake-dup"


def test_load_and_disable_env(plugins: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUPOSE_LOAD_PLUGINS", "good")
    reg = Registry().load(_fake_eps())
    assert not reg.errors and "lazyhead" in reg.names("heads")
    monkeypatch.delenv("BUPOSE_LOAD_PLUGINS")
    monkeypatch.setenv("BUPOSE_DISABLE_PLUGINS", "good,broken")
    reg = Registry().load(_fake_eps())
    assert "lazyhead" not in reg.names("heads")
    assert {e.plugin for e in reg.errors} == {"hookfail"}


def test_trace_env_prints_hook_calls(plugins: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("BUPOSE_TRACE_PLUGINS", "1")
    Registry().load(_fake_eps())
    err = capsys.readouterr().err
    assert "call good.bupose_register_heads" in err
    assert "head lazyhead <- fake-good" in err


def test_unknown_name_message_suggests_and_gives_pip_line() -> None:
    reg = Registry().load([])
    with pytest.raises(UnknownComponentError) as info:
        reg.get("heads", "dkr")
    msg = str(info.value)
    assert "No heads are installed" in msg
    assert "Did you mean 'dekr'?" in msg
    assert f"{sys.executable} -m pip install bupose-dekr" in msg


def test_unknown_installed_name_lists_installed(plugins: Path) -> None:
    reg = Registry().load(_fake_eps())
    msg = reg.unknown_message("heads", "lazyhaed")
    assert "Installed heads:" in msg and "lazyhead" in msg and "Did you mean 'lazyhead'?" in msg
    assert "broken" in msg  # points at the plugins that failed to load


def _bupose(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bupose.core", *args], capture_output=True, text=True, timeout=120
    )


def test_cli_plugins_json_lists_distributions_components_errors(plugins: Path) -> None:
    proc = _bupose("plugins", "--json")
    assert proc.returncode == 0, proc.stderr
    desc = json.loads(proc.stdout)
    dists = {d["distribution"]: d for d in desc["distributions"]}
    good = dists["fake-good"]
    assert good["version"] == "1.2.3"
    comps = good["plugins"][0]["components"]
    assert comps["heads"] == ["lazyhead"] and comps["backbones"] == ["lazybb"]
    assert good["plugins"][0]["commands"] == ["fake-hello"]
    assert "bupose-core" in dists
    errors = {e["plugin"]: e for e in desc["errors"]}
    assert {"broken", "hookfail"} <= set(errors)
    assert dists["fake-broken"]["plugins"][0]["errors"][0]["stage"] == "import"


def test_cli_keeps_working_with_broken_plugins(plugins: Path) -> None:
    proc = _bupose("plugins")
    assert proc.returncode == 0
    assert "ERROR during import: ImportError: this plugin is broken on purpose" in proc.stdout
    proc = _bupose("list", "heads")
    assert proc.returncode == 0 and "lazyhead" in proc.stdout
    proc = _bupose("fake-hello")
    assert proc.returncode == 0 and "hello from fake" in proc.stdout


def test_listing_imports_neither_torch_nor_factories(plugins: Path) -> None:
    code = (
        "import sys, bupose.core\n"
        "from bupose.core.plugins import get_registry\n"
        "from bupose.core.cli import build_cli\n"
        "get_registry(); build_cli()\n"
        "bad = [m for m in ('torch', 'fakeplug_good_impl') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_get_registry_is_cached_and_resettable() -> None:
    from bupose.core.plugins import get_registry

    reset_registry()
    a = get_registry()
    assert get_registry() is a
    reset_registry()
    assert get_registry() is not a


ORDER_PLAIN = """
from bupose.core import hookimpl, HeadSpec
import fakeplug_calls

@hookimpl
def bupose_register_heads(register):
    fakeplug_calls.CALLS.append("{name}")
    register(HeadSpec(name="clash", factory="x:y", summary="{name}", layouts=("coco17",)))
"""
ORDER_MARKED = """
from bupose.core import hookimpl, HeadSpec
import fakeplug_calls

@hookimpl({marker}=True)
def bupose_register_heads(register):
    fakeplug_calls.CALLS.append("{name}")
    register(HeadSpec(name="clash", factory="x:y", summary="{name}", layouts=("coco17",)))
"""


def _ordering_plugins(site: Path, fake_dist, marker: str | None) -> list:
    import importlib
    import importlib.metadata as md

    fake_dist(site, "fake-calls", "1", {"fakeplug_calls": "CALLS = []\n"}, {})
    fake_dist(site, "fake-aaa", "1", {"fakeplug_aaa": ORDER_PLAIN.format(name="aaa")}, {"aaa": "fakeplug_aaa"})
    zzz = ORDER_PLAIN if marker is None else ORDER_MARKED
    fake_dist(site, "fake-zzz", "1", {"fakeplug_zzz": zzz.format(name="zzz", marker=marker)}, {"zzz": "fakeplug_zzz"})
    importlib.invalidate_caches()
    return [ep for ep in md.entry_points(group="bupose") if ep.name in {"aaa", "zzz"}]


def test_hooks_run_in_load_order_without_markers(fake_site: Path, fake_dist) -> None:
    eps = _ordering_plugins(fake_site, fake_dist, None)
    import fakeplug_calls

    reg = Registry().load(eps)
    assert fakeplug_calls.CALLS == ["aaa", "zzz"]
    assert reg.get("heads", "clash").summary == "aaa"  # first registration keeps the name
    dup = [e for e in reg.errors if "registered twice" in e.error]
    assert len(dup) == 1 and dup[0].plugin == "zzz"


def test_tryfirst_marker_orders_calls_across_plugins(fake_site: Path, fake_dist) -> None:
    eps = _ordering_plugins(fake_site, fake_dist, "tryfirst")
    import fakeplug_calls

    reg = Registry().load(eps)
    assert fakeplug_calls.CALLS == ["zzz", "aaa"], "tryfirst must run zzz before aaa (loaded earlier)"
    assert reg.get("heads", "clash").summary == "zzz"
    dup = [e for e in reg.errors if "registered twice" in e.error]
    assert len(dup) == 1 and dup[0].plugin == "aaa", "the later call's duplicate is attributed to it"


def test_trylast_marker_moves_a_plugin_after_core_builtins(fake_site: Path, fake_dist) -> None:
    import importlib
    import importlib.metadata as md

    late = """
from bupose.core import hookimpl, LayoutSpec
import fakeplug_calls

@hookimpl(trylast=True)
def bupose_register_layouts(register):
    fakeplug_calls.CALLS.append("late")
    register(LayoutSpec(name="coco17", keypoints=("a", "b"), flip_index=(1, 0), sigmas=(0.1, 0.1), overrides=True))

@hookimpl(tryfirst=True)
def bupose_register_heads(register):
    raise RuntimeError("first and broken")
"""
    fake_dist(fake_site, "fake-calls", "1", {"fakeplug_calls": "CALLS = []\n"}, {})
    fake_dist(fake_site, "fake-late", "1", {"fakeplug_late": late}, {"aaa_late": "fakeplug_late"})
    fake_dist(fake_site, "fake-good", "1", {"fakeplug_good": GOOD, "fakeplug_good_impl": IMPL_THAT_RAISES}, {"good": "fakeplug_good"})
    importlib.invalidate_caches()
    reg = Registry().load([ep for ep in md.entry_points(group="bupose") if ep.name in {"aaa_late", "good"}])
    # trylast: called after core's layouts, so its override replaces core's coco17
    assert reg.get("layouts", "coco17").num_keypoints == 2
    assert reg.get("layouts", "coco17").distribution == "fake-late"
    # tryfirst + raising: recorded against that plugin only; the other plugin still registers
    errors = [(e.plugin, e.stage) for e in reg.errors]
    assert errors == [("aaa_late", "bupose_register_heads")]
    assert "first and broken" in reg.errors[0].error
    assert "lazyhead" in reg.names("heads") and "lazybb" in reg.names("backbones")


def test_stray_bupose_hook_is_reported(fake_site: Path, fake_dist) -> None:
    import importlib
    import importlib.metadata as md

    old = """
from bupose.core import hookimpl, GrouperSpec

@hookimpl
def bupose_register_decoders(register):
    raise AssertionError("never called")

@hookimpl
def bupose_register_groupers(register):
    register(GrouperSpec(name="old_grouper", factory="x:y", summary="s"))
"""
    fake_dist(fake_site, "fake-old", "1", {"fakeplug_old": old}, {"old": "fakeplug_old"})
    importlib.invalidate_caches()
    reg = Registry().load([ep for ep in md.entry_points(group="bupose") if ep.name == "old"])
    assert "old_grouper" in reg.names("groupers")
    (err,) = reg.errors
    assert err.stage == "bupose_register_decoders" and "not a bupose hook" in err.error


def test_specname_implementation_is_called_once_with_its_own_provenance(fake_site: Path, fake_dist) -> None:
    import importlib
    import importlib.metadata as md

    renamed = """
from bupose.core import hookimpl, HeadSpec
import fakeplug_calls

@hookimpl(specname="bupose_register_heads")
def heads_under_another_name(register):
    fakeplug_calls.CALLS.append("renamed")
    register(HeadSpec(name="renamedhead", factory="x:y", summary="s", layouts=("coco17",)))
"""
    fake_dist(fake_site, "fake-calls", "1", {"fakeplug_calls": "CALLS = []\n"}, {})
    fake_dist(fake_site, "fake-renamed", "2.0", {"fakeplug_renamed": renamed}, {"renamed": "fakeplug_renamed"})
    fake_dist(fake_site, "fake-aaa", "1", {"fakeplug_aaa": ORDER_PLAIN.format(name="aaa")}, {"aaa": "fakeplug_aaa"})
    importlib.invalidate_caches()
    reg = Registry().load([ep for ep in md.entry_points(group="bupose") if ep.name in {"aaa", "renamed"}])
    import fakeplug_calls

    assert fakeplug_calls.CALLS == ["aaa", "renamed"]
    assert reg.get("heads", "renamedhead").distribution == "fake-renamed"
    assert not reg.errors
