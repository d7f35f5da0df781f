"""pytest plugin shipped with bupose-core (entry point ``pytest11``): markers and fixtures for
plugin authors' tests. The conformance suites live in :mod:`bupose.core.testing`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ..plugins import Registry, get_registry, reset_registry


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "gpu: needs a CUDA device (skipped without one)")
    config.addinivalue_line("markers", "slow: takes more than a few seconds")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except Exception:  # noqa: BLE001
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="no CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def bupose_registry() -> Registry:
    """The process-wide registry."""
    return get_registry()


@pytest.fixture
def fresh_bupose_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[Registry]:
    """A registry rebuilt from scratch (after the test changed plugin env vars); reset afterwards."""
    reset_registry()
    from ..ops import clear_op_cache

    clear_op_cache()
    yield get_registry()
    reset_registry()
    clear_op_cache()
