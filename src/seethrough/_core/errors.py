"""Exceptions and warnings raised by seethrough.

Hierarchy::

    SeethroughError (ValueError)
    ├── InputError            inputs of the wrong shape, dtype, device, or with NaN/inf
    ├── LayerError            a layer name or module that the model does not have
    ├── TargetError           a target that does not fit the model output
    ├── GradientError         the quantity explained does not depend on what is attributed
    └── ConfigError           a method setting that cannot work (unknown rule, bad steps, ...)
        └── NotFittedError    a fitted object used before fit()

    SeethroughWarning (UserWarning)
    ├── ModelStateWarning     the model was handed over in a state that had to be changed
    └── ZeroAttributionWarning  an attribution came back identically zero
"""

from __future__ import annotations

__all__ = [
    "SeethroughError",
    "InputError",
    "LayerError",
    "TargetError",
    "GradientError",
    "ConfigError",
    "NotFittedError",
    "SeethroughWarning",
    "ModelStateWarning",
    "ZeroAttributionWarning",
]


class SeethroughError(ValueError):
    """Base class of every error seethrough raises on bad input or settings."""


class InputError(SeethroughError):
    """The inputs cannot be explained as given (shape, dtype, device, NaN/inf)."""


class LayerError(SeethroughError):
    """A layer was named that the model does not have, or it cannot be used here."""


class TargetError(SeethroughError):
    """A target does not fit the model output (out of range, wrong length, ...)."""


class GradientError(SeethroughError):
    """The explained quantity does not depend on the inputs or the chosen layer."""


class ConfigError(SeethroughError):
    """A method was configured with settings that cannot work."""


class SeethroughWarning(UserWarning):
    """Base class of seethrough's warnings."""


class ModelStateWarning(SeethroughWarning):
    """The model's state had to be changed for the explanation (and was restored)."""


class ZeroAttributionWarning(SeethroughWarning):
    """An attribution is identically zero: usually a sign that something is off."""


class NotFittedError(ConfigError):
    """A fitted object (a CAV, a probe, a direction) was used before ``fit()``."""
