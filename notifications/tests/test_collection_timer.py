"""The collector's timing callback (``notifications.metrics.watch_collections``)
never raises: a collection may start anywhere, also a frame short of the
recursion limit, while a hostile request's deep nesting is being refused.
Python reports a callback's exception as a traceback on stderr (seen in the
hostile-client test's server log); the pause then goes unrecorded instead."""

from __future__ import annotations

import gc
import sys
from typing import Any

from notifications import metrics


def collect_near_the_recursion_limit(margin: int) -> None:
    """Recurse until Python refuses, then collect ``margin`` frames above that."""

    def descend(depth: int) -> int:
        try:
            below = descend(depth + 1)
        except RecursionError:
            return 0
        if below == margin:
            gc.collect()
        return below + 1

    descend(0)


def test_a_collection_a_few_frames_short_of_the_recursion_limit_reports_nothing(
    monkeypatch: Any,
) -> None:
    metrics.watch_collections()
    unraisable: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(200)  # a shallow stack: the test is quick
    try:
        for margin in range(1, 8):
            collect_near_the_recursion_limit(margin)
    finally:
        sys.setrecursionlimit(limit)
    # Other finalizers a collection runs this deep (a database driver's
    # ``__del__``) may report too; they are not this callback.
    assert [hook for hook in unraisable if hook.object is metrics._on_collection] == []
    assert metrics._on_collection in gc.callbacks
