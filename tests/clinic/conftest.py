"""Shared fixtures of the clinic tests: sample histories of virtual patients."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from adaptrx import protocols
from adaptrx.clinic.synthetic import simulate_history
from adaptrx.patient import make_cohort


@pytest.fixture(scope="session")
def sample_document() -> dict[str, Any]:
    """An 8-week knee-OA history under the pain-monitoring model (supervised, 3 sessions a week)."""
    row = make_cohort("knee_oa", 3, seed=3, split="test").iloc[1].to_dict()
    doc, _ = simulate_history(row, protocols.get("pain_monitoring", delivery="supervised"), 8, seed=0)
    return doc


@pytest.fixture
def document(sample_document: dict[str, Any]) -> dict[str, Any]:
    """A fresh, modifiable copy of the sample history."""
    return copy.deepcopy(sample_document)
