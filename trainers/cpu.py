"""CPU training speed knobs that leave the results unchanged.

* **channels-last** (:meth:`TrainModule.on_fit_start`): convolution weights and the
  batched pipelines' views in NHWC layout, which oneDNN's CPU convolutions, pooling and
  batch norm prefer (small CNN at 28 px: ~25% less CPU time per step).
* **allocator** (:func:`keep_freed_memory`): glibc ``malloc`` serves every block above
  128 KiB-32 MiB with a fresh ``mmap`` and unmaps it on ``free``, so each training step
  page-faults its activation buffers in again and the kernel zeroes every page (small
  CNN at 64 px, batch 256: ~1M page faults and 40% of the step in the kernel). With
  ``M_MMAP_MAX = 0`` and no heap trimming, freed buffers are reused by the next step;
  restored (and the heap trimmed) when training ends. glibc only; a no-op elsewhere.
* **threads**: an OpenMP team that spins while it waits (GNU libgomp's default) loses
  most of its time when the cores are shared with other processes (2 spinning threads
  on a busy 2-core machine: 2-3x slower than one; passive waits: as fast as one thread
  there, and both threads still work on an idle machine). ``curate train`` sets
  ``OMP_WAIT_POLICY=PASSIVE`` (unless already set) before torch loads
  (:mod:`curate.cli.train`); library users set it in their process's environment.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
_DEFAULTS = {M_TRIM_THRESHOLD: 128 * 1024, M_MMAP_MAX: 65536}  # glibc's defaults


def _glibc():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 - raises AttributeError when not glibc
        return libc
    except (OSError, AttributeError):
        return None


def keep_freed_memory(on: bool = True) -> bool:
    """Turn the step-to-step buffer reuse described above on (or back to glibc's
    defaults, trimming the heap); returns False where unsupported."""
    libc = _glibc()
    if libc is None:
        return False
    if on:
        ok = libc.mallopt(M_MMAP_MAX, 0) and libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1)
    else:
        ok = all(libc.mallopt(k, v) for k, v in _DEFAULTS.items())
        libc.malloc_trim(0)
    return bool(ok)
