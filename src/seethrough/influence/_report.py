"""HTML for influence results, and the influence section of the demo report."""

from __future__ import annotations

import html as _html
import time
from typing import Callable

from .._core.result import _thaw
from ..report.html import HtmlReport, _kv_table, _table_html
from ..report.plot import figure_to_png, png_data_uri

__all__ = [
    "influence_section",
    "add_influence",
    "add_neuron_maps",
    "add_comparison",
    "add_essence",
    "comparison_html",
    "neuron_rows",
    "no_negative_note",
    "essence_rows",
]


def _esc(v) -> str:
    return _html.escape(str(v), quote=True)


def _figure_html(fig, caption: str | None = None) -> str:
    png = figure_to_png(fig, dpi=100)
    cap = f"<figcaption>{_esc(caption)}</figcaption>" if caption else ""
    return f'<figure class="st-figure"><img src="{png_data_uri(png)}" alt="{_esc(caption or "figure")}">{cap}</figure>'


def neuron_rows(result, k: int = 5) -> list[dict]:
    """The top ``k`` neurons of positive influence and the top ``k`` of negative influence
    (neurons with influence exactly 0 are in neither list)."""
    k = min(k, result.n_neurons)
    v = result.neuron_influence
    rows = []
    pos = [j for j in result.top_positive(k).tolist() if v[j] > 0]
    neg = [j for j in result.top_negative(k).tolist() if v[j] < 0]
    for rank, j in enumerate(pos, 1):
        rows.append({"rank": f"+{rank}", result.neuron: j, "influence": float(v[j])})
    for rank, j in enumerate(neg, 1):
        rows.append({"rank": f"-{rank}", result.neuron: j, "influence": float(v[j])})
    return rows


def no_negative_note(result) -> str | None:
    """Why no neuron is listed with negative influence, or None when some are."""
    if bool((result.neuron_influence < 0).any()):
        return None
    why = (" With reduce='max' a channel is negative only if its influence is negative at every "
           "position; a max-pooling or ReLU after the slice leaves positions at 0.") if result.reduce == "max" else ""
    return f"no {result.neuron} has negative influence.{why}"


def _describe(result) -> str:
    red = (f" A channel's influence is the {result.reduce} over its positions of the averaged "
           f"gradient map.") if result.reduce else ""
    mult = " Gradients are multiplied by the activation." if result.multiply_by_activation else ""
    return (
        f"Internal influence at slice {result.layer!r} of the quantity {result.target}, averaged over "
        f"the {result.distribution} distribution of interest ({result.n_instances} instance(s)); "
        f"{result.n_neurons} {result.neuron}s; {result.seconds:.2f} s, {result.n_evaluations} model "
        f"evaluations.{red}{mult}"
    )


def add_influence(report: HtmlReport, result, *, k: int = 5) -> HtmlReport:
    """A paragraph describing ``result``, its bar chart and the top neurons' table."""
    report.add_paragraph(_describe(result))
    report.add_figure(result.plot(k=k), caption=f"influence of every {result.neuron}; top {k} of each sign marked")
    report.add_table(neuron_rows(result, k), caption="most influential neurons (positive and negative)")
    note = no_negative_note(result)
    if note:
        report.add_paragraph(note)
    return report


def add_neuron_maps(report: HtmlReport, maps, *, n_show: int = 4) -> HtmlReport:
    """The mosaic of the neurons' input attributions."""
    report.add_figure(
        maps.plot(n_show=n_show),
        caption=(
            f"{maps.method} of each {maps.neuron}'s activation (channel mean over positions) with respect "
            f"to the input; the number under a {maps.neuron} is its influence. Red: raises the "
            f"{maps.neuron}'s activation, blue: lowers it."
        ),
    )
    return report


def comparison_html(comparison, *, n_show: int = 4) -> str:
    """HTML fragment of a :class:`ClassComparison`: the side-by-side mosaic and the top
    neurons of the class and comparative quantities."""
    parts = []
    c1 = comparison.name_of(comparison.cls)
    n_cls = comparison.influence.n_instances
    what = f"class {c1!r}" + (f" rather than {comparison.name_of(comparison.vs)!r}" if comparison.vs is not None else "")
    parts.append(
        f"<p>Why {_esc(what)}: rows are plain integrated gradients on the input and the influence-directed "
        f"explanations (the input attribution of the top {len(comparison.neurons)} neuron(s) of slice "
        f"{_esc(comparison.influence.layer)} by influence over the {n_cls} instances of {_esc(c1)}); the last "
        f"column is each map's mean over the {len(comparison.instances)} explained instances of the class.</p>"
    )
    parts.append(_figure_html(comparison.plot(n_show=n_show), "class and comparative explanations side by side"))
    rows = []
    for label, res, neurons in (
        (f"{c1}", comparison.influence, comparison.neurons),
        (f"{c1} - {comparison.name_of(comparison.vs)}", comparison.comparative, comparison.comparative_neurons),
    ):
        if res is None or neurons is None:
            continue
        rows.append([label, res.target, ", ".join(f"{j} ({float(res.neuron_influence[j]):+.3g})" for j in neurons.tolist()),
                     ", ".join(str(j) for j in res.top_positive(min(5, res.n_neurons)).tolist())])
    parts.append(_table_html(["quantity", "target", "neurons used (influence)", f"top 5 {comparison.influence.neuron}s"], rows))
    parts.append(_kv_table(sorted(_thaw(comparison.settings).items()), caption="settings"))
    return "\n".join(parts)


def add_comparison(report: HtmlReport, comparison, *, n_show: int = 4) -> HtmlReport:
    report.add_html(comparison_html(comparison, n_show=n_show))
    return report


def essence_rows(result) -> list[dict]:
    """Table rows of an essence result, numbers formatted (mean ± std over random draws)."""
    rows = []
    for r in result.rows():
        rows.append({
            "k": r["k"],
            "top-k balanced acc.": f"{r['top-k balanced accuracy']:.3f}",
            "random-k balanced acc.": f"{r['random-k balanced accuracy (mean)']:.3f} ± {r['random-k balanced accuracy (std)']:.3f}",
            "top-k AUC": f"{r['top-k AUC']:.3f}",
            "random-k AUC": f"{r['random-k AUC (mean)']:.3f} ± {r['random-k AUC (std)']:.3f}",
        })
    rows.append({
        "k": f"all {result.n_neurons}",
        "top-k balanced acc.": f"{result.full_accuracy:.3f}",
        "random-k balanced acc.": "",
        "top-k AUC": f"{result.full_auc:.3f}",
        "random-k AUC": "",
    })
    return rows


def add_essence(report: HtmlReport, result, *, class_name: str | None = None) -> HtmlReport:
    c = class_name or str(result.cls)
    counts = dict(result.counts)
    report.add_paragraph(
        f"Essence of class {c!r} at slice {result.layer!r}: only k {result.influence.neuron}s are kept (the "
        f"others zeroed in a forward hook) and the model's margin logit_c - max other logit, thresholded at the "
        f"value that maximises balanced accuracy on the training split "
        f"({counts.get('train_positive')} + {counts.get('train_negative')} instances), classifies class vs rest "
        f"on the test split ({counts.get('test_positive')} + {counts.get('test_negative')}). Top-k: the k "
        f"neurons with the largest influence ({result.settings.get('quantity')} quantity, "
        f"{result.settings.get('select')} selection); random: {result.settings.get('n_random')} draws "
        f"(seed {result.settings.get('seed')}), mean ± std. Chance is 0.5. {result.seconds:.1f} s."
    )
    report.add_table(essence_rows(result))
    report.add_figure(result.plot(), caption="balanced accuracy against the number of neurons kept")
    return report


def influence_section(report: HtmlReport, *, progress: Callable[[str], None] | None = None) -> HtmlReport:
    """Influence-directed explanations of the bundled shapes model: the most influential
    channels of a class with their visualisations, class vs comparative vs integrated
    gradients side by side, and the essence experiment."""
    from .. import zoo
    from ..data.shapes import make_shapes
    from .essence import EssenceExperiment
    from .explain import ClassInfluence, NeuronVisualization
    from .internal import InternalInfluence

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
    if progress:
        progress("internal influence")
    res = InternalInfluence(model, layer=layer, distribution="class").compute(
        data.images, cls, labels=data.labels
    )
    report.add_heading(f"Most influential channels for {classes[cls]!r}", 3)
    add_influence(report, res, k=3)
    if progress:
        progress("neuron visualisations")
    shown = res.instances[:4]
    maps = NeuronVisualization(model, layer=layer, method_settings={"steps": 16}).visualize(
        data.images[shown], res, k=3
    )
    add_neuron_maps(report, maps, n_show=4)

    if progress:
        progress("class and comparative explanations")
    report.add_heading(f"{classes[cls]!r} and {classes[cls]!r} rather than {classes[vs]!r}", 3)
    comp = ClassInfluence(model, layer=layer, top=3, max_instances=12, method_settings={"steps": 16}).explain(
        data.images, data.labels, cls, vs, class_names=classes
    )
    add_comparison(report, comp, n_show=4)

    if progress:
        progress("essence experiment")
    report.add_heading("Essence: a few influential channels carry a class", 3)
    train, test = make_shapes(200, seed=5151), make_shapes(200, seed=6161)
    ess = EssenceExperiment(model, layer="features.16", ks=(1, 2, 4, 8, 16), n_random=10, seed=0).run(
        train.images, train.labels, test.images, test.labels, cls
    )
    add_essence(report, ess, class_name=classes[cls])
    report.add_paragraph(f"This section took {time.perf_counter() - start:.1f} s.")
    return report
