"""Process-wide malloc tuning for full-vocabulary work, applied by the `opd-engine` entry point.

Torch-free and import-free so the CLI can apply it before any command without slowing `--help`;
library calls never apply it, because changing the allocator of a caller's process (a notebook,
a test runner) is not a library's decision.
"""

from __future__ import annotations


def tune_allocator() -> bool:
    """Serve large CPU buffers with mmap so they go back to the OS when freed.

    Full-vocabulary chunks (tens of MB each, allocated and freed thousands of times by several
    torch threads) otherwise fragment glibc's per-thread heaps: measured on a 152k vocabulary,
    a 4k-token rollout grew the process by 13 GB instead of 0.35 GB. No-op off glibc; returns
    whether the setting was applied.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        m_mmap_threshold = -3
        return bool(libc.mallopt(m_mmap_threshold, 1 << 20))
    except (OSError, AttributeError):
        return False
