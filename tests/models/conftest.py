"""Fixtures of the model tests (helpers live in tests/models/models_testing.py)."""

from __future__ import annotations

import pytest

from brainalign.models import MODELS


@pytest.fixture(params=sorted(MODELS))
def name(request: pytest.FixtureRequest) -> str:
    """Every registered model."""
    return request.param
