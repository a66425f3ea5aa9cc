"""Fixtures of the learning tests; the builders they share are in store_builders.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from learning.store.preference_store import PreferenceStore


@pytest.fixture
def store() -> Iterator[PreferenceStore]:
    """A fresh in-memory preference store, closed after the test."""
    opened = PreferenceStore.open(":memory:")
    yield opened
    opened.close()
