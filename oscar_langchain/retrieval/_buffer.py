"""Growable numpy arrays with amortised O(1) appends (capacity doubling).

:class:`Buffer` appends rows (or items), :class:`ColumnBuffer` appends columns.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["Buffer", "ColumnBuffer"]


class Buffer:
    """Rows appended to a numpy array whose capacity doubles when full.

    ``view`` is a view of the filled part. Growing allocates a new array, so a view
    taken earlier stays valid (readers holding it never see a half-copied array).
    A buffer wrapping a read-only (memory-mapped) array copies it on first growth.
    """

    def __init__(self, dtype: npt.DTypeLike, width: int | None = None) -> None:
        shape: tuple[int, ...] = (0,) if width is None else (0, width)
        self._data: np.ndarray[Any, Any] = np.empty(shape, dtype=dtype)
        self._n = 0

    @classmethod
    def wrap(cls, array: np.ndarray[Any, Any]) -> Buffer:
        """A buffer whose content is ``array`` (not copied until it grows)."""
        buf = cls(array.dtype, None if array.ndim == 1 else array.shape[1])
        buf._data = array
        buf._n = len(array)
        return buf

    def __len__(self) -> int:
        return self._n

    @property
    def view(self) -> np.ndarray[Any, Any]:
        """The filled part of the buffer."""
        return self._data[: self._n]

    def extend(self, values: npt.ArrayLike) -> None:
        """Append ``values`` (rows, for a 2-D buffer)."""
        arr = np.asarray(values, dtype=self._data.dtype)
        need = self._n + len(arr)
        if need > len(self._data) or not self._data.flags.writeable:
            capacity = max(need, 2 * len(self._data), 16)
            grown = np.empty((capacity, *self._data.shape[1:]), dtype=self._data.dtype)
            grown[: self._n] = self._data[: self._n]
            self._data = grown
        self._data[self._n : need] = arr
        self._n = need

    def set(self, index: Any, value: Any) -> None:
        """Assign in place (copies a read-only array first)."""
        if not self._data.flags.writeable:
            self._data = np.array(self._data[: self._n])
        self._data[index] = value


class ColumnBuffer:
    """A ``(height, n)`` float matrix to which columns are appended, capacity doubling.

    ``view`` is ``data[:, :n]``: each row is contiguous (a row is what a sparse query
    gathers), rows are ``capacity`` apart, which BLAS takes as its leading dimension.
    As with :class:`Buffer`, growing allocates a new array (earlier views stay valid)
    and a read-only (memory-mapped) array is copied on first growth.
    """

    def __init__(self, dtype: npt.DTypeLike, height: int) -> None:
        self._data: np.ndarray[Any, Any] = np.empty((height, 0), dtype=dtype)
        self._n = 0

    @classmethod
    def wrap(cls, array: np.ndarray[Any, Any]) -> ColumnBuffer:
        """A buffer whose content is the 2-D ``array`` (not copied until it grows)."""
        buf = cls(array.dtype, array.shape[0])
        buf._data = array
        buf._n = array.shape[1]
        return buf

    def __len__(self) -> int:
        return self._n

    @property
    def view(self) -> np.ndarray[Any, Any]:
        """The filled columns."""
        return self._data[:, : self._n]

    def extend(self, columns: npt.ArrayLike) -> None:
        """Append the columns of the ``(height, m)`` array ``columns``."""
        arr = np.asarray(columns, dtype=self._data.dtype)
        need = self._n + arr.shape[1]
        if need > self._data.shape[1] or not self._data.flags.writeable:
            capacity = max(need, 2 * self._data.shape[1], 16)
            grown = np.empty((self._data.shape[0], capacity), dtype=self._data.dtype)
            grown[:, : self._n] = self._data[:, : self._n]
            self._data = grown
        self._data[:, self._n : need] = arr
        self._n = need
