"""Lazy voxels: a volume's data read from its source files only when asked for, one slab at a time.

The nibabel ``ArrayProxy`` idea: a proxy knows its ``shape`` and ``dtype`` without
reading anything, becomes a numpy array with ``np.asarray(proxy)``, and hands out
slabs (a few slices along ``k``) so that writers stream a volume through memory
instead of holding it whole. Where a slice's stored bytes are exactly the output's
bytes (uncompressed, little-endian, no value change), :meth:`SliceProxy.byte_span`
says where they lie in the source file, so a writer may let the kernel copy them.

Layout: ``[i, j, k]`` or ``[i, j, k, t]`` as :class:`convert.volume.Volume`; a 2D
slice is ``[i, j]`` at one ``(k, t)``.

This module imports nothing from medconvert except :mod:`convert.errors`.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np


@dataclass(frozen=True)
class ByteSpan:
    """Where one slice's voxels lie in a file: ``length`` bytes from ``offset``, in Fortran
    (``i`` fastest) order, native little-endian, exactly the proxy's dtype."""

    path: Path
    offset: int
    length: int


#: Reads the 2D ``[i, j]`` slice at ``(k, t)`` (``t`` is 0 for a 3D volume).
SliceReader = Callable[[int, int], np.ndarray]


class SliceProxy:
    """Voxels of a 3D/4D volume that are read one 2D slice at a time.

    Args:
        shape: ``(ni, nj, nk)`` or ``(ni, nj, nk, nt)``.
        dtype: dtype of every slice ``read`` returns.
        read: ``read(k, t) -> [i, j]`` array of ``dtype``; may be called from several threads.
        spans: per slice (indexed ``t * nk + k``) its :class:`ByteSpan` in a source file, or None
            where the bytes differ from the output values (compressed, masked bits, rescaled).
        workers: threads that read slices in parallel (decoders release the GIL); default 2.
    """

    def __init__(self, shape: Sequence[int], dtype: Any, read: SliceReader, *,
                 spans: Sequence[ByteSpan | None] | None = None, workers: int | None = None) -> None:
        self._shape = tuple(int(n) for n in shape)
        if len(self._shape) not in (3, 4):
            raise ValueError(f"a slice proxy is 3D or 4D, got shape {self._shape}")
        self._dtype = np.dtype(dtype)
        self._read = read
        n_slices = self._shape[2] * (self._shape[3] if len(self._shape) == 4 else 1)
        if spans is not None and len(spans) != n_slices:
            raise ValueError(f"{len(spans)} byte spans for {n_slices} slices")
        self._spans = list(spans) if spans is not None else None
        self._workers = workers if workers is not None else min(2, os.cpu_count() or 1)

    # ---- the ndarray-like surface a Volume and its users rely on
    @property
    def shape(self) -> tuple[int, ...]:
        return self._shape

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    @property
    def ndim(self) -> int:
        return len(self._shape)

    @property
    def size(self) -> int:
        return int(np.prod(self._shape))

    @property
    def itemsize(self) -> int:
        return self._dtype.itemsize

    @property
    def nbytes(self) -> int:
        return self.size * self.itemsize

    @property
    def n_times(self) -> int:
        return self._shape[3] if len(self._shape) == 4 else 1

    def __repr__(self) -> str:
        return f"<SliceProxy shape={self._shape} dtype={self._dtype}>"

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        out = np.empty(self._shape, dtype=self._dtype, order="F")
        for t in range(self.n_times):
            target = out if out.ndim == 3 else out[..., t]
            self._fill(target, 0, self._shape[2], t)
        return out if dtype is None else out.astype(dtype, copy=False)

    def __getitem__(self, key: Any) -> np.ndarray:
        return np.asarray(self)[key]

    def astype(self, dtype: Any, copy: bool = True) -> np.ndarray:
        return np.asarray(self).astype(dtype, copy=copy)

    # ---- streaming
    def slab(self, k0: int, k1: int, t: int = 0) -> np.ndarray:
        """Slices ``k0:k1`` of volume ``t`` as an F-ordered ``[i, j, k1 - k0]`` array."""
        nk = self._shape[2]
        if not (0 <= k0 <= k1 <= nk) or not 0 <= t < self.n_times:
            raise IndexError(f"slab {k0}:{k1} of volume {t} is outside shape {self._shape}")
        out = np.empty(self._shape[:2] + (k1 - k0,), dtype=self._dtype, order="F")
        self._fill(out, k0, k1, t)
        return out

    def byte_span(self, k: int, t: int = 0) -> ByteSpan | None:
        """Where slice ``(k, t)``'s output bytes lie in a source file, or None when they must be computed."""
        if self._spans is None:
            return None
        return self._spans[t * self._shape[2] + k]

    def _fill(self, target: np.ndarray, k0: int, k1: int, t: int) -> None:
        def one(k: int) -> None:
            values = self._read(k, t)
            if values.shape != self._shape[:2]:
                raise ValueError(f"slice ({k}, {t}) has shape {values.shape}, expected {self._shape[:2]}")
            target[:, :, k - k0] = values

        ks = range(k0, k1)
        if self._workers > 1 and len(ks) > 2:
            with ThreadPoolExecutor(max_workers=self._workers) as pool:
                for _ in pool.map(one, ks):
                    pass
        else:
            for k in ks:
                one(k)


def is_proxy(data: Any) -> bool:
    """True for lazy voxel data (anything with ``shape``, ``dtype`` and ``slab`` that is not an ndarray)."""
    return not isinstance(data, np.ndarray) and hasattr(data, "slab") and hasattr(data, "shape")


def iter_slabs(data: Any, max_bytes: int = 64 << 20) -> Iterator[tuple[int, int, int, np.ndarray]]:
    """``(t, k0, k1, slab)`` over a 3D/4D array or proxy, volume by volume, a few slices at a time.

    ``slab`` is ``data[:, :, k0:k1(, t)]``; for an ndarray it is a view (nothing copied).
    """
    shape = tuple(data.shape)
    nt = shape[3] if len(shape) == 4 else 1
    per_slice = max(1, shape[0] * shape[1] * np.dtype(data.dtype).itemsize)
    step = max(1, max_bytes // per_slice)
    for t in range(nt):
        for k0 in range(0, shape[2], step):
            k1 = min(shape[2], k0 + step)
            if is_proxy(data):
                yield t, k0, k1, data.slab(k0, k1, t)
            else:
                yield t, k0, k1, (data[:, :, k0:k1] if len(shape) == 3 else data[:, :, k0:k1, t])
