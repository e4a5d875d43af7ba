"""The allocators of a process that streams a large file (``canaryctl ingest load``).

Sits under the CLI's file path: ``use_system_allocator`` is called before pyarrow is first
imported. It only sets process-wide allocator options; it reads nothing and stores nothing,
and the server and the library never call it (it would change the whole host process).

Why: pyarrow's ``pa.set_memory_pool`` changes only the pool that pyarrow's own calls use.
Arrow's C++ code that asks ``arrow::default_memory_pool()`` itself — the Parquet reader's
decompression and decoding buffers among it — keeps the pool Arrow picked when its library
was loaded, mimalloc by default, which holds on to freed pages. Arrow reads that choice from
``ARROW_DEFAULT_MEMORY_POOL`` once, so the variable is set before pyarrow is imported. glibc's
allocator in turn keeps freed memory in its heap once its dynamic thresholds have grown to
the largest buffer freed so far; fixed thresholds (``mallopt``; the same as glibc's
``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_``, which only work from the
environment of a process yet to start) hand large freed blocks back at once. Figures:
bench/RESULTS.md, "Ingest memory"; docs/ingest.md, "Memory".
"""

from __future__ import annotations

import ctypes
import os
import sys

POOL_VARIABLE = "ARROW_DEFAULT_MEMORY_POOL"
RETURN_ABOVE = 128 << 10  # blocks of this size or more are mapped alone and unmapped when freed
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h


def use_system_allocator() -> bool:
    """Make glibc's allocator Arrow's default pool for this process, unless the user chose one.

    Also fixes glibc's thresholds (``return_freed_memory``) when the system pool is used.

    Returns
    -------
    bool
        True when the system allocator is wanted: the variable was unset (and now says
        ``system``) or already said so; False when the user chose another pool. When True
        the caller should also give pyarrow's own pool the system allocator
        (``pa.set_memory_pool(pa.system_memory_pool())``): in a process whose pyarrow was
        imported earlier, the variable no longer changes Arrow's C++ default.
    """
    if os.environ.setdefault(POOL_VARIABLE, "system") != "system":
        return False
    return_freed_memory()
    return True


def return_freed_memory() -> bool:
    """Have glibc's ``malloc`` give freed blocks of ``RETURN_ABOVE`` bytes or more back at once.

    Returns
    -------
    bool
        Whether glibc took the setting; False on other C libraries and platforms, where
        nothing is changed.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no libc.so.6)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(
        mallopt(_M_MMAP_THRESHOLD, RETURN_ABOVE) and mallopt(_M_TRIM_THRESHOLD, RETURN_ABOVE)
    )
