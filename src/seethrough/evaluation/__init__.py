"""Can this explanation be trusted? Sanity checks, faithfulness, robustness, localization and
complexity metrics, and the trust report."""

from ._common import MetricResult, check_masks, pixel_maps, resolve_maps

__all__ = ["MetricResult", "resolve_maps", "pixel_maps", "check_masks"]
