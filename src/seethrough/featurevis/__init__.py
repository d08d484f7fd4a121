"""Feature visualization: images that maximise what a unit, channel, layer or class responds to.

::

    from seethrough import zoo
    from seethrough.featurevis import visualize_channels, render, Channel, TotalVariation

    model = zoo.load("shapes-cnn")
    vis = visualize_channels(model, "features.9", steps=64)  # one image per channel
    vis.images.shape                                          # (64, 3, 64, 64), in [0, 1]
    vis = render(model, Channel("features.9", 5) - 0.05 * TotalVariation(), batch=4)

Parts: parameterizations (:mod:`~seethrough.featurevis.param`: pixel or Fourier, colour
decorrelation, sigmoid or clip), random transforms
(:mod:`~seethrough.featurevis.transforms`), objectives with ``+ - *`` algebra
(:mod:`~seethrough.featurevis.objectives`) and rendering
(:mod:`~seethrough.featurevis.render`). See docs/featurevis.md.
"""

from .objectives import (
    L1,
    L2,
    Blur,
    Channel,
    ClassLogit,
    DeepDream,
    Direction,
    Diversity,
    Neuron,
    Objective,
    TotalVariation,
)
from .param import ColorDecorrelation, ImageParam, InputSpace
from .render import FeatureVisualization, FeatureVisualizer, render, visualize_channels
from .transforms import (
    Compose,
    Jitter,
    Pad,
    RandomRotate,
    RandomScale,
    StepRandom,
    Transform,
    standard_transforms,
)

__all__ = [
    "render",
    "visualize_channels",
    "FeatureVisualizer",
    "FeatureVisualization",
    "Objective",
    "Channel",
    "Neuron",
    "DeepDream",
    "ClassLogit",
    "Direction",
    "Diversity",
    "L1",
    "L2",
    "TotalVariation",
    "Blur",
    "ImageParam",
    "ColorDecorrelation",
    "InputSpace",
    "Transform",
    "Compose",
    "Pad",
    "Jitter",
    "RandomScale",
    "RandomRotate",
    "StepRandom",
    "standard_transforms",
]
