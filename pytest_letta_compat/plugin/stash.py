"""Keys under which the pytest layer keeps its state on the config and items."""

from __future__ import annotations

import pytest

MATRIX_KEY = pytest.StashKey[object]()
SESSION_START_KEY = pytest.StashKey[float]()
STACKS_KEY = pytest.StashKey[list]()
PHASE_KEY = pytest.StashKey[tuple]()  # (nodeid, 'setup' | 'call' | 'teardown') running now
STARTED_BY_KEY = pytest.StashKey[dict]()  # stack -> the phase that started it, or a reporting.Prestarted
PRESTART_KEY = pytest.StashKey[object]()  # plugin/prestart.Prestart, when starting ahead is on
BACKEND_KEY = pytest.StashKey[object]()
