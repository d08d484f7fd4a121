"""Feature visualization: images that maximise what a unit, channel, layer or class responds to.

::

    from seethrough import zoo
    from seethrough.featurevis import visualize_channels, render, channel, TotalVariation

    model = zoo.load("shapes-cnn")
    vis = visualize_channels(model, "features.9", steps=64)  # one image per channel
    vis.images.shape                                          # (64, 3, 64, 64), in [0, 1]
    vis = render(model, channel("features.9", 5) - 0.05 * TotalVariation(), batch=4)

Parts: parameterizations (:mod:`~seethrough.featurevis.param`: pixel or Fourier, colour
decorrelation, sigmoid or clip), random transforms
(:mod:`~seethrough.featurevis.transforms`), objectives with ``+ - *`` algebra
(:mod:`~seethrough.featurevis.objectives`; any :class:`seethrough.Target` becomes one with
:func:`from_target`), rendering (:mod:`~seethrough.featurevis.render`) and the views
(:mod:`~seethrough.featurevis.views`: ``vis.plot()``, ``vis.to_html()``). The family takes
the model's input shape from the caller (``input_shape=`` or ``size=``) or from the model
itself; it loads no model and no data. See docs/featurevis.md.
"""

from . import views  # noqa: E402,F401  (registers FeatureVisualization's plot and HTML views)
from .objectives import (
    L1,
    L2,
    BlurPenalty,
    ChannelObjective,
    ClassLogit,
    DeepDream,
    Direction,
    Diversity,
    NeuronObjective,
    Objective,
    TargetObjective,
    TotalVariation,
    channel,
    class_logit,
    deep_dream,
    direction,
    diversity,
    from_target,
    neuron,
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
    "channel",
    "neuron",
    "deep_dream",
    "class_logit",
    "direction",
    "diversity",
    "from_target",
    "ChannelObjective",
    "NeuronObjective",
    "DeepDream",
    "ClassLogit",
    "Direction",
    "Diversity",
    "TargetObjective",
    "L1",
    "L2",
    "TotalVariation",
    "BlurPenalty",
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
