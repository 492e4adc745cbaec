"""actors/allocator.py: the allocator's thresholds are raised where the C library is glibc, and left alone
(without error) elsewhere."""

import platform

from actors.allocator import keep_freed_memory


def test_keep_freed_memory_takes_on_glibc_and_is_harmless_elsewhere():
    took = keep_freed_memory()

    assert took == (platform.libc_ver()[0] == "glibc")
    assert keep_freed_memory() == took  # idempotent: every actor of a process may call it
