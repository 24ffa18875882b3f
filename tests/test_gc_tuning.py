"""``tune_gc_for_serving``: what ``switch run`` does to the collector once its state is loaded."""

from __future__ import annotations

import gc

from switch.gc_tuning import SERVING_THRESHOLDS, tune_gc_for_serving


def test_freezes_the_loaded_state_and_raises_the_thresholds() -> None:
    before = gc.get_threshold()
    loaded_state = [{"card": i} for i in range(1000)]  # alive when the switch starts serving
    try:
        gc.unfreeze()
        tune_gc_for_serving()
        assert gc.get_threshold() == SERVING_THRESHOLDS
        assert gc.get_freeze_count() >= len(loaded_state)
        # frozen objects are out of every generation the collector scans
        scanned = {id(o) for o in gc.get_objects()}
        assert not any(id(o) in scanned for o in loaded_state)
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
