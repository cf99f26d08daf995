"""Peak resident memory of one call on Linux, shared by the benchmark scripts.

The rise of VmHWM over the starting VmRSS, after returning freed heap to the system and resetting the
high-water mark through /proc/self/clear_refs.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable


def _status_mib(field: str) -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def rss_peak_mib(run: Callable[[], object]) -> float:
    """Resident memory the call adds at its peak, in MiB."""
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # resets VmHWM to the current resident size
    base = _status_mib("VmRSS")
    run()
    return _status_mib("VmHWM") - base
