"""Shared fixtures: the recipe-built official R-50 COCO training file (written once per session)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

import _grouppose_golden as _golden


@pytest.fixture(scope="session")
def r50_official_sd() -> dict[str, torch.Tensor]:
    """The official-layout R-50 COCO state_dict filled by the recipe (662 keys, aliases included)."""
    return _golden.build_state_dict("r50_coco")


@pytest.fixture(scope="session")
def r50_training_file(tmp_path_factory: pytest.TempPathFactory, r50_official_sd: dict) -> Path:
    """The same dict wrapped as the official training file ``main.py`` saves."""
    path = tmp_path_factory.mktemp("weights") / "checkpoint.pth"
    args = argparse.Namespace(backbone="resnet50", num_body_points=17, num_queries=100, num_select=50, lr=1e-4)
    torch.save(
        {"model": r50_official_sd, "optimizer": {"state": {}, "param_groups": []}, "lr_scheduler": {"step_size": 50},
         "epoch": 59, "args": args},
        path,
    )  # fmt: skip
    return path
