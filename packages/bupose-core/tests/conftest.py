"""Shared helpers for bupose-core's tests."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest


def make_fake_distribution(
    site: Path, dist: str, version: str, modules: dict[str, str], entry_points: dict[str, str]
) -> None:
    """Write an installed-looking distribution (dist-info + modules) into ``site``."""
    for name, source in modules.items():
        path = site / (name.replace(".", "/") + ".py")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    eps = "[bupose]\n" + "".join(f"{k} = {v}\n" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(eps)
    (info / "RECORD").write_text("")


@pytest.fixture
def fake_dist():
    """``fake_dist(site, dist, version, modules, entry_points)``: write a fake installed distribution."""
    return make_fake_distribution


@pytest.fixture
def fake_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory on sys.path (and PYTHONPATH for subprocesses) to put fake distributions in."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", str(site))
    yield site
    for mod in [m for m in sys.modules if m.startswith("fakeplug")]:
        del sys.modules[mod]
