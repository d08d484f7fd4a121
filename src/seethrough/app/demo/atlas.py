"""The atlas section of the demo report: a small atlas of the bundled shapes model."""

from __future__ import annotations

import base64
import html as _html
import json
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from seethrough.report.html import HtmlReport

__all__ = ["atlas_section", "DEMO_IMAGES", "DEMO_STEPS", "DEMO_SEED"]

#: Settings of the demo atlas (small enough for about a minute on one core).
DEMO_IMAGES = 1000
DEMO_STEPS = 16
DEMO_SEED = 2024


def _uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def atlas_section(
    report: HtmlReport,
    out_dir: str | Path,
    *,
    progress: Callable[[str], None] | None = None,
    layers: Sequence[str] | None = None,
    unit_labels: Mapping[str, Mapping[int, str]] | None = None,
) -> Path:
    """Build the atlas of ``shapes-cnn`` on 1,000 shapes images (top-9 examples, short
    feature visualisations) into ``out_dir/atlas/`` and add a section to ``report`` that
    links to it (a link relative to ``out_dir``, where the report is saved) and shows a
    few units. Returns the atlas's ``index.html``."""
    from seethrough import zoo
    from seethrough.app.data import open_source
    from seethrough.atlas import Atlas, DatasetExamples
    from seethrough.atlas.views import crop_html, selective_units

    out_dir = Path(out_dir)
    atlas_dir = out_dir / "atlas"
    model = zoo.load("shapes-cnn")
    source = open_source("shapes", n=DEMO_IMAGES, seed=DEMO_SEED)
    steps = DEMO_STEPS
    t0 = time.perf_counter()
    build = Atlas(
        model,
        layers=layers,
        top_k=9,
        steps=steps,
        title="shapes-cnn atlas (demo)",
        unit_labels=unit_labels,
        progress=progress,
    ).build(source, atlas_dir)
    seconds = time.perf_counter() - t0

    ex = DatasetExamples.load(atlas_dir / "examples.safetensors")
    report.add_heading("Atlas of the shapes model's units")
    report.add_paragraph(
        f"A browsable atlas of the channels of shapes-cnn ({build.n_units} units in layers "
        f"{', '.join(build.layers)}"
        + (", with the network-dissection label of each interpretable unit" if unit_labels else "")
        + "): "
        f"for each unit the 9 most and 9 least activating of "
        f"{build.n_examples:,} shapes images (activation = the channel's maximum over positions), "
        f"with the receptive field of that maximum"
        + (f", and a feature visualisation ({steps} steps)." if steps else ".")
        + f" Built in {seconds:.1f} s (examples {build.seconds_examples:.1f} s, feature visualisation "
        f"{build.seconds_featurevis:.1f} s, writing {build.seconds_writing:.1f} s). The atlas is a "
        f"folder of static pages next to this report."
    )
    rel = build.index.relative_to(out_dir).as_posix()
    report.add_html(f'<p><a href="{_html.escape(rel)}"><strong>Open the atlas</strong></a></p>')

    # a few units of the last layer: the most selective ones (highest top-1 over mean)
    layer = build.layers[-1]
    top = ex.top_values_[layer][:, 0]
    units = selective_units(ex, layer, 6)
    manifest = json.loads((atlas_dir / "manifest.json").read_text(encoding="utf-8"))
    slug = manifest["slugs"][layer]
    H, W = ex.input_shape_[1], ex.input_shape_[2]
    cells = []
    for u in units:
        page = f"atlas/layers/{slug}/u{u}.html"
        fv = atlas_dir / "layers" / slug / "img" / f"u{u}_fv.png"
        i = int(ex.top_indices_[layer][u, 0])
        pics = []
        if fv.is_file():
            pics.append(
                f'<img class="st-img" src="{_uri(fv)}" alt="{_html.escape(layer)} unit {u}: feature visualisation">'
            )
        boxes = ex.top_boxes_[layer]
        assert boxes is not None  # a convolutional layer of images: every example has its box
        y0, x0, y1, x1 = (int(v) for v in boxes[u, 0])
        pics.append(
            crop_html(
                _uri(atlas_dir / "examples" / f"{i}.png"),
                (y0, x0, y1, x1),
                H,
                W,
                128,
                f"{layer} unit {u}: receptive field of its top example #{i}",
            )
        )
        cells.append(
            f'<figure class="st-sample"><a class="st-pair" href="{_html.escape(page)}">{"".join(pics)}</a>'
            f"<figcaption>{_html.escape(layer)} unit {u}: "
            + ("feature visualisation and " if fv.is_file() else "")
            + f"the receptive field of its top example (#{i}, activation {float(top[u]):.3g})</figcaption></figure>"
        )
    report.add_html(
        "<style>.st-atlas .patch{position:relative;overflow:hidden;display:block;line-height:0;margin:auto}"
        ".st-atlas .patch img{position:absolute;max-width:none;image-rendering:pixelated}</style>"
        '<div class="st-samples st-atlas">' + "".join(cells) + "</div>"
    )
    return build.index
