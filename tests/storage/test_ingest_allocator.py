"""``controller.ingest.allocator``: the CLI's file path gives all of Arrow glibc's allocator.

Each case runs in a fresh interpreter, since Arrow picks its C++ default pool once, when its
library is loaded (this test process imported pyarrow long ago).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from controller.ingest import allocator

PROBE = (
    "from controller.ingest import allocator; wanted = allocator.use_system_allocator(); "
    "import pyarrow as pa; print(wanted, pa.default_memory_pool().backend_name)"
)
UNTOUCHED = "import pyarrow as pa; print(pa.default_memory_pool().backend_name)"


def _run(code: str, **env: str) -> str:
    base = {k: v for k, v in os.environ.items() if k != allocator.POOL_VARIABLE}
    done = subprocess.run(
        [sys.executable, "-c", code], env={**base, **env}, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_arrow_left_alone_picks_another_pool_than_the_system_one() -> None:
    # what the allocator module exists for: without it Arrow's C++ default is not glibc's
    assert _run(UNTOUCHED) != "system"


def test_called_before_pyarrow_loads_arrow_default_pool_is_the_system_one() -> None:
    assert _run(PROBE) == "True system"


def test_a_pool_the_user_chose_is_kept() -> None:
    assert _run(PROBE, **{allocator.POOL_VARIABLE: "jemalloc"}) == "False jemalloc"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_glibc_takes_the_fixed_thresholds() -> None:
    code = "from controller.ingest import allocator; print(allocator.return_freed_memory())"
    assert _run(code) == "True"
