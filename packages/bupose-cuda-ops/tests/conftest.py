"""Makes the shared test helpers (cuda_ops_testutil.py) importable and provides the fixtures."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from cuda_ops_testutil import COMPILED, IMPLEMENTATIONS


@pytest.fixture(params=IMPLEMENTATIONS)
def impl(request: pytest.FixtureRequest) -> tuple[str, str]:
    """(implementation, device) of every implementation that can run here."""
    return request.param


@pytest.fixture(params=COMPILED)
def compiled(request: pytest.FixtureRequest) -> tuple[str, str]:
    """(implementation, device) of the compiled implementations."""
    return request.param
