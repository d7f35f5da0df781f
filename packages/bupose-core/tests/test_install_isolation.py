"""Installing one package pulls only its declared bupose dependencies (checked inside nox sessions)."""

from __future__ import annotations

import importlib.metadata as md
import os
import re

import pytest


def _bupose_dists() -> set[str]:
    return {d.metadata["Name"] for d in md.distributions() if (d.metadata["Name"] or "").startswith("bupose")}


def test_core_requires_no_other_bupose_package() -> None:
    reqs = md.requires("bupose-core") or []
    names = {re.split(r"[\s\[<>=!~;]", r, maxsplit=1)[0] for r in reqs}
    assert not {n for n in names if n.startswith("bupose")}


@pytest.mark.skipif("BUPOSE_ISOLATED_PACKAGES" not in os.environ, reason="only meaningful inside a nox tests() session")
def test_only_declared_packages_installed() -> None:
    expected = set(os.environ["BUPOSE_ISOLATED_PACKAGES"].split(","))
    assert _bupose_dists() == expected
