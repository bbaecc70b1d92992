"""The cyclic collector while the bridge serves: start-up's objects frozen out of its scans, a young
generation large enough for the values that live about a second, and both undone when it stops."""

from __future__ import annotations

import gc
from pathlib import Path

from bridge.app import STREAMING_GC_THRESHOLDS
from tests.harness import bridge_config, running_bridge


async def test_the_collector_is_tuned_while_serving_and_restored_after(tmp_path: Path) -> None:
    before = gc.get_threshold()
    assert before != STREAMING_GC_THRESHOLDS
    config, _ports = bridge_config(tmp_path)
    async with running_bridge(config, tmp_path):
        assert gc.isenabled()
        assert gc.get_threshold() == STREAMING_GC_THRESHOLDS
        assert gc.get_freeze_count() > 100_000  # the address space, the fronts, the imports
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0 and gc.isenabled()
