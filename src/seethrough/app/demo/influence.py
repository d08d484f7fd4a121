"""The demo's influence section: the bundled shapes model (loaded from the zoo, data
generated here) explained with the influence family."""

from __future__ import annotations

import time
from collections.abc import Callable

from seethrough.influence import ClassInfluence, EssenceExperiment, InternalInfluence, NeuronVisualization
from seethrough.influence.views import add_comparison, add_essence, add_influence, add_neuron_maps
from seethrough.report.html import HtmlReport

__all__ = ["influence_section"]


def influence_section(report: HtmlReport, *, progress: Callable[[str], None] | None = None) -> HtmlReport:
    """Influence-directed explanations of the bundled shapes model: the most influential
    channels of a class with their visualisations, class vs comparative vs integrated
    gradients side by side, and the essence experiment."""
    from seethrough import zoo
    from seethrough.data.shapes import make_shapes

    say = progress or (lambda _s: None)
    start = time.perf_counter()
    model = zoo.load("shapes-cnn")
    classes = list(zoo.info("shapes-cnn").classes)
    layer, cls, vs = "features.13", classes.index("triangle"), classes.index("square")
    data = make_shapes(160, seed=4242)
    report.add_heading("Influence-directed explanations")
    report.add_paragraph(
        "Leino et al. (2018): the internal influence of a neuron is the gradient of a quantity of interest "
        "(a class logit, or the difference of two) with respect to the neuron's activation, averaged over a "
        "distribution of interest (here the instances of a class). Highly influential channels are then "
        "interpreted through an input attribution of their activation."
    )
    say("internal influence")
    res = InternalInfluence(model, layer=layer, distribution="class").compute(data.images, cls, labels=data.labels)
    report.add_heading(f"Most influential channels for {classes[cls]!r}", 3)
    add_influence(report, res, k=3)
    say("neuron visualisations")
    shown = res.instances[:4]
    maps = NeuronVisualization(model, layer=layer, method_settings={"steps": 16}).visualize(
        data.images[shown], res, k=3
    )
    add_neuron_maps(report, maps, n_show=4)

    say("class and comparative explanations")
    report.add_heading(f"{classes[cls]!r} and {classes[cls]!r} rather than {classes[vs]!r}", 3)
    comp = ClassInfluence(model, layer=layer, top=3, max_instances=12, method_settings={"steps": 16}).explain(
        data.images, data.labels, cls, vs, class_names=classes
    )
    add_comparison(report, comp, n_show=4)

    say("essence experiment")
    report.add_heading("Essence: a few influential channels carry a class", 3)
    train, test = make_shapes(200, seed=5151), make_shapes(200, seed=6161)
    ess = EssenceExperiment(model, layer="features.16", ks=(1, 2, 4, 8, 16), n_random=10, seed=0).run(
        train.images, train.labels, test.images, test.labels, cls
    )
    add_essence(report, ess, class_name=classes[cls])
    report.add_paragraph(f"This section took {time.perf_counter() - start:.1f} s.")
    return report
