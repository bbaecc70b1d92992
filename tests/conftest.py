from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# generation time varies with machine load (2 cores shared with subprocesses in the e2e tests): judge
# the properties, not the clock
_quiet = [HealthCheck.too_slow, HealthCheck.data_too_large]
settings.register_profile("ci", max_examples=60, deadline=None, suppress_health_check=_quiet)
settings.register_profile("dev", max_examples=100, deadline=None, suppress_health_check=_quiet)
settings.load_profile("ci" if os.environ.get("CI") else "dev")
