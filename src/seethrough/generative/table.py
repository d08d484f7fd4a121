"""A small frozen table of named columns (numbers or strings), one row per latent point,
decoded sample or step of a walk: what describers produce and what walks and samplers return.

Numeric columns are stored as 1-D tensors (so they save into the ``.safetensors`` body),
string columns as tuples of ``str`` (saved in the JSON header); :meth:`AttributeTable.save`
and :meth:`~seethrough._core.result.Result.load` round-trip both.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .._core.errors import InputError
from .._core.result import Result

__all__ = ["AttributeTable", "as_column"]


def as_column(values: Any, name: str = "column") -> Tensor | tuple[str, ...]:
    """One column: a 1-D tensor of numbers (bool, int or float) or a tuple of strings."""
    if isinstance(values, Tensor):
        t = values.detach().cpu()
    elif isinstance(values, np.ndarray):
        if values.dtype.kind in "USO":
            return tuple(str(v) for v in values.reshape(-1).tolist())
        t = torch.from_numpy(np.ascontiguousarray(values))
    elif isinstance(values, (str, bytes)):
        raise InputError(f"column {name!r} is a single string; give one value per row (a list of strings)")
    elif isinstance(values, Iterable):
        items = list(values)
        if items and all(isinstance(v, str) for v in items):
            return tuple(items)
        if any(isinstance(v, str) for v in items):
            raise InputError(f"column {name!r} mixes strings and other values; give all strings or all numbers")
        try:
            arr = np.asarray(items) if items else np.zeros(0, dtype=np.float32)
        except (TypeError, ValueError) as e:
            raise InputError(f"column {name!r} is neither numbers nor strings: {e}") from e
        if arr.dtype.kind not in "biuf":
            raise InputError(f"column {name!r} is neither numbers nor strings (dtype {arr.dtype})")
        t = torch.from_numpy(np.ascontiguousarray(arr))
    else:
        raise InputError(f"column {name!r} must be a sequence of numbers or strings, got {type(values).__name__}")
    if t.dim() == 0:
        raise InputError(f"column {name!r} is a scalar; give one value per row")
    if t.dim() > 1:
        if t.dim() == 2 and t.shape[1] == 1:
            t = t[:, 0]
        else:
            raise InputError(
                f"column {name!r} has shape {tuple(t.shape)}; a column is one value per row (split a "
                f"vector-valued attribute into several columns)"
            )
    if t.is_complex():
        raise InputError(f"column {name!r} is complex; give real numbers")
    return t.contiguous()


@dataclass(frozen=True, eq=False)
class AttributeTable(Result):
    """Named columns of equal length, in order.

    Attributes
    ----------
    columns:
        ``name -> column``: a 1-D tensor of numbers or a tuple of strings (anything
        accepted by :func:`as_column` is converted on construction).
    title:
        A caption for views.
    """

    columns: Mapping[str, Any] = field(default_factory=dict)
    title: str = ""

    def __post_init__(self) -> None:
        cols: dict[str, Any] = {}
        n = None
        for name, values in dict(self.columns).items():
            if not isinstance(name, str) or not name:
                raise InputError(f"column names must be non-empty strings, got {name!r}")
            col = as_column(values, name)
            if n is None:
                n = len(col)
            elif len(col) != n:
                first = next(iter(cols))
                raise InputError(
                    f"column {name!r} has {len(col)} values but column {first!r} has {n}; every column needs one "
                    f"value per row"
                )
            cols[name] = col
        object.__setattr__(self, "columns", cols)
        super().__post_init__()

    # -- access -----------------------------------------------------------------------
    def __len__(self) -> int:
        for col in self.columns.values():
            return len(col)
        return 0

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.columns)

    def __contains__(self, name: object) -> bool:
        return name in self.columns

    def __getitem__(self, name: str) -> Any:
        try:
            return self.columns[name]
        except KeyError:
            raise KeyError(f"no column {name!r}; the columns are {list(self.columns)}") from None

    def numeric(self) -> tuple[str, ...]:
        """Names of the numeric columns."""
        return tuple(k for k, v in self.columns.items() if isinstance(v, Tensor))

    def array(self, name: str) -> np.ndarray:
        """A numeric column as a float64 numpy array."""
        col = self[name]
        if not isinstance(col, Tensor):
            raise InputError(f"column {name!r} holds strings, not numbers")
        return col.double().numpy()

    def with_columns(self, columns: Mapping[str, Any], *, replace: bool = False) -> AttributeTable:
        """A new table with ``columns`` appended (an existing name raises unless ``replace``)."""
        clash = [k for k in columns if k in self.columns]
        if clash and not replace:
            raise InputError(f"columns {clash} exist already; pass replace=True to overwrite them")
        merged = dict(self.columns)
        merged.update(columns)
        return AttributeTable(merged, title=self.title)

    def select(self, names: Sequence[str]) -> AttributeTable:
        return AttributeTable({k: self[k] for k in names}, title=self.title)

    def take(self, index: Any) -> AttributeTable:
        """The rows at ``index`` (integer positions or a boolean mask)."""
        idx = torch.as_tensor(np.asarray(index))
        if idx.dtype == torch.bool:
            idx = torch.nonzero(idx).reshape(-1)
        pos = idx.long().tolist()
        out = {}
        for k, v in self.columns.items():
            out[k] = v[idx.long()] if isinstance(v, Tensor) else tuple(v[i] for i in pos)
        return AttributeTable(out, title=self.title)

    def rows(self) -> list[dict[str, Any]]:
        """One dict per row, with Python scalars (what ``HtmlReport.add_table`` takes)."""
        lists = {k: (v.tolist() if isinstance(v, Tensor) else list(v)) for k, v in self.columns.items()}
        return [{k: lists[k][i] for k in lists} for i in range(len(self))]

    def to_records(self) -> list[tuple[Any, ...]]:
        """One tuple per row, in the order of :attr:`names`."""
        lists = [(v.tolist() if isinstance(v, Tensor) else list(v)) for v in self.columns.values()]
        return list(zip(*lists)) if lists else []

    def to_pandas(self) -> Any:
        """A ``pandas.DataFrame`` (pandas is imported here, only when asked for)."""
        import pandas as pd

        return pd.DataFrame({k: (v.numpy() if isinstance(v, Tensor) else list(v)) for k, v in self.columns.items()})

    def to_csv(self, path: str | Path) -> Path:
        """Write a CSV file with a header row; floats are written in full precision."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(self.names)
            for row in self.to_records():
                w.writerow([repr(v) if isinstance(v, float) and math.isfinite(v) else v for v in row])
        return path

    def __repr__(self) -> str:
        cols = ", ".join(f"{k}:{'num' if isinstance(v, Tensor) else 'str'}" for k, v in self.columns.items())
        return f"AttributeTable({len(self)} rows; {cols})"
