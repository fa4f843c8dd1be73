"""The garbage collector's settings while a run sends requests.

With Python's defaults (a young-generation collection every 700 new container objects), a run at 256 in
flight collected ~90 times per 1,000 records, and each collection walked the requests in flight and, now
and then, every object made at start-up (pydantic schemas, modules): about 60 µs of CPU per record, as much
as everything the record writer does. Almost everything a request allocates is freed by reference counting
anyway; what the collector is for (reference cycles) is rare on this path.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

# Young objects allowed between collections (Python's default: 700). A few MB of cyclic garbage at most.
YOUNG_THRESHOLD = 10_000


@contextlib.contextmanager
def fewer_collections() -> Iterator[None]:
    """Collect less often for the duration, and leave the objects that exist on entry out of collections
    (``gc.freeze``: they live for the whole run). Both are undone on exit, for a caller that goes on working."""
    previous = gc.get_threshold()
    freeze = gc.get_freeze_count() == 0  # a caller that froze objects itself keeps managing that
    if freeze:
        gc.freeze()
    gc.set_threshold(max(previous[0], YOUNG_THRESHOLD), *previous[1:])
    try:
        yield
    finally:
        gc.set_threshold(*previous)
        if freeze:
            gc.unfreeze()
