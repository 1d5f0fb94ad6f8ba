"""The server process's garbage collector, tuned once the application is loaded.

Python's cyclic collector runs a young-generation pass every 700 net
container allocations and now and then a full pass over every object the
process holds. A handshake allocates thousands of short-lived containers
(Twisted's request, autobahn's handshake, the consumer and its queue, the
hop's rows), so a busy server spent a large share of each handshake
collecting, and every full pass walked the hundreds of thousands of objects
Django and its apps build at startup, which live as long as the process.

So, once the ASGI application is built: ``gc.freeze()`` moves everything
allocated so far into a permanent generation no pass visits, and the young
generation is collected every ``GC_GEN0_THRESHOLD`` allocations instead of
700. Measured (docs/performance.md, round 4): WebSocket connect + subscribe
from 2.2-2.5x the bare baseline's server CPU per connect to 1.9-2.0x in the
same runs; idle RSS per connection unchanged. ``GC_GEN0_THRESHOLD=0`` leaves
the collector as Python sets it.
"""

from __future__ import annotations

import gc

from django.conf import settings


def tune_garbage_collector() -> None:
    """Freeze what startup allocated and widen the young generation (see above)."""
    threshold = settings.GC_GEN0_THRESHOLD
    if not threshold:
        return
    gc.collect()  # startup's own garbage goes now, not into the frozen set
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(threshold, older, oldest)
