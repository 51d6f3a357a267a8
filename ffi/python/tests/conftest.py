"""Shared fixtures: the repository root and the per-module handle leak check."""

import gc
from pathlib import Path

import pytest

import lmf

#: The lmf repository (this file is ffi/python/tests/conftest.py).
REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module", autouse=True)
def no_leaked_handles():
    """Every handle a test module made is freed by its end."""
    gc.collect()
    before = lmf.live_handles()
    yield
    gc.collect()
    assert lmf.live_handles() == before, "lmf handles leaked by this module"
