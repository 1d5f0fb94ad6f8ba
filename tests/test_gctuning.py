"""The server process's collector tuning (booktime.gctuning)."""

from __future__ import annotations

import gc

import pytest
from django.test import override_settings

from booktime.gctuning import tune_garbage_collector


@pytest.fixture
def collector():
    """Put the collector back as the test found it."""
    threshold, frozen = gc.get_threshold(), gc.get_freeze_count()
    yield
    if not frozen:
        gc.unfreeze()
    gc.set_threshold(*threshold)


def test_startup_objects_are_frozen_and_the_young_generation_widened(collector):
    _, older, oldest = gc.get_threshold()
    with override_settings(GC_GEN0_THRESHOLD=5000):
        tune_garbage_collector()
    assert gc.get_threshold() == (5000, older, oldest)
    assert gc.get_freeze_count() > 10_000  # Django, the apps, the test run


def test_zero_leaves_the_collector_alone(collector):
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)
    with override_settings(GC_GEN0_THRESHOLD=0):
        tune_garbage_collector()
    assert gc.get_threshold() == (700, 10, 10)
    assert gc.get_freeze_count() == 0
