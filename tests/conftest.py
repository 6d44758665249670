"""Shared pytest settings. Tests that need podman/root skip with the reason when those are missing."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = None
    if os.geteuid() != 0:
        reason = "needs root (rootful podman runs the systemd lab nodes)"
    elif not shutil.which("podman"):
        reason = "needs podman: run `make bootstrap`"
    if reason:
        for item in items:
            if "podman" in item.keywords or "e2e" in item.keywords:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def project_root() -> Path:
    return ROOT
