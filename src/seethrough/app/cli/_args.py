"""Argument parsing shared by the subcommands: number lists and targets."""

from __future__ import annotations

import sys

from seethrough._core.errors import SeethroughError
from seethrough.app.specs import floats as _floats

__all__ = ["_floats", "_parse_target", "method_names", "progress"]


def method_names(text: str) -> list[str]:
    """``"all"`` or comma-separated registry names (unknown names list the closest ones)."""
    from seethrough.attribution.registry import METHODS, get_method

    if text == "all":
        return list(METHODS)
    return [get_method(n).name for n in text.split(",") if n.strip()]


def progress(name: str) -> None:
    print(f"  running {name} ...", file=sys.stderr, flush=True)


def _parse_target(text: str | None):
    """``None``/"predicted", ``3``, ``3,1,0`` (one per input) or ``3-5`` (class 3 vs 5)."""
    from seethrough._core.targets import ClassDifference

    if text is None or text == "predicted":
        return None
    try:
        if "-" in text.strip("-"):
            a, b = text.split("-", 1)
            return ClassDifference(int(a), int(b))
        parts = [int(v) for v in text.split(",")]
    except ValueError:
        raise SeethroughError(
            f"cannot read target {text!r}: give a class index (3), one per input (3,1,0), "
            f"a class difference (3-5) or 'predicted'"
        ) from None
    return parts[0] if len(parts) == 1 else parts
