"""Shared fixtures: one Ray cluster for the whole session, started patiently.

Ray's start-up waits are fixed (30 s for the raylet to register, 15 s for its agents' port files);
on a loaded 2-core CI machine a cold start can miss them and raise a bare ``Exception``. The
cluster is therefore started once per session, retried, and shared by every Ray test.
"""

from __future__ import annotations

import os
import time

import pytest

RAY_START_ATTEMPTS = 3
# tests never reach a model or dataset hub (Hugging Face datasets reads local split folders only)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


@pytest.fixture(scope="session")
def ray_cluster():
    ray = pytest.importorskip("ray")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import helpers_foundation
    import ray.cloudpickle as cp

    problems = []
    for attempt in range(RAY_START_ATTEMPTS):
        try:
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
            break
        except Exception as err:  # noqa: BLE001 - Ray signals start-up timeouts with a bare Exception
            problems.append(f"attempt {attempt + 1}: {err}")
            ray.shutdown()
            time.sleep(5)
    else:
        pytest.fail("Ray did not start: " + "; ".join(problems))
    cp.register_pickle_by_value(helpers_foundation)  # test-only classes travel by value to Ray workers
    yield ray
    ray.shutdown()
