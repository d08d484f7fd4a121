"""Argument parsing shared by the subcommands: number lists and targets."""

from __future__ import annotations

import argparse

from seethrough._core.errors import SeethroughError

__all__ = ["_floats", "_parse_target"]


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}")


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
        )
    return parts[0] if len(parts) == 1 else parts
