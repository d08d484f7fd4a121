"""Self-contained HTML for explanations.

Everything written here opens offline: images are embedded as ``data:`` URIs, the CSS is
inline and there are no scripts or external links. All text that comes from the caller
(titles, method names, settings, labels) is HTML-escaped.
"""

from __future__ import annotations

import datetime as _dt
import html as _html
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .._core.errors import InputError
from .plot import (
    _is_signed_map,
    _named_explanations,
    array_to_png,
    color_limits,
    default_cmap,
    figure_to_png,
    image_for_display,
    mask_overlay,
    png_data_uri,
    to_heatmap,
)

__all__ = ["CSS", "explanation_html", "HtmlReport"]

CSS = """
.st-report{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;
 color:#1d1d1f;line-height:1.5;max-width:1240px;margin:0 auto;padding:1.5rem 2rem 4rem;}
.st-report h1{font-size:1.9rem;margin:0 0 .2rem}
.st-report h2{font-size:1.4rem;margin:2.2rem 0 .6rem;border-bottom:1px solid #ddd;padding-bottom:.2rem}
.st-report h3{font-size:1.15rem;margin:1.6rem 0 .4rem}
.st-report p{max-width:52rem}
.st-toc{background:#f6f7f9;border:1px solid #e3e5e8;border-radius:6px;padding:.6rem 1.2rem;margin:1rem 0 1.5rem}
.st-toc ul{margin:.2rem 0;padding-left:1.2rem}
.st-toc a{color:#0b57d0;text-decoration:none}
.st-toc a:hover{text-decoration:underline}
.st-toc .st-l3{margin-left:1.2rem}.st-toc .st-l4,.st-toc .st-l5,.st-toc .st-l6{margin-left:2.4rem}
.st-note{color:#666;font-size:.88rem}
.st-table{border-collapse:collapse;margin:.6rem 0 1rem;font-size:.9rem}
.st-table th,.st-table td{border:1px solid #dfe1e5;padding:.25rem .6rem;text-align:left;vertical-align:top}
.st-table th{background:#f3f4f6;font-weight:600}
.st-table td.st-num{text-align:right;font-variant-numeric:tabular-nums}
.st-table caption{caption-side:bottom;color:#666;font-size:.85rem;padding-top:.3rem;text-align:left}
.st-figure{margin:1rem 0}
.st-figure img{max-width:100%;height:auto}
.st-figure figcaption{color:#555;font-size:.88rem}
.st-explanation{border:1px solid #e3e5e8;border-radius:6px;padding:.4rem 1rem 1rem;margin:1rem 0}
.st-explanation h3{margin-top:.6rem}
.st-samples{display:flex;flex-wrap:wrap;gap:.8rem}
.st-sample{margin:0;border:1px solid #eee;border-radius:4px;padding:.4rem;background:#fafafa}
.st-sample figcaption{font-size:.8rem;color:#444;max-width:270px}
.st-pair{display:flex;gap:.3rem}
.st-img{width:128px;height:auto;image-rendering:pixelated;display:block}
.st-strip{width:256px;height:28px;image-rendering:pixelated;display:block}
.st-gridwrap{overflow-x:auto;margin:.6rem 0 1rem}
.st-grid{border-collapse:collapse;font-size:.82rem}
.st-grid th,.st-grid td{border:1px solid #e3e5e8;padding:3px;text-align:center;vertical-align:middle}
.st-grid thead th{background:#f3f4f6}
.st-grid tbody th{text-align:left;background:#f8f9fa;white-space:nowrap;padding:3px 8px;font-weight:600}
.st-grid .st-img{width:96px}
.st-sub{display:block;font-weight:400;color:#666;font-size:.78rem}
.st-ok{color:#137333}.st-bad{color:#b3261e;font-weight:600}
"""


# ---------------------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------------------
def _esc(value: Any) -> str:
    return _html.escape(str(value), quote=True)


def _fmt(value: Any) -> str:
    """A short text for a value (not escaped)."""
    if value is None:
        return "—"
    if isinstance(value, Tensor):
        value = value.detach().cpu()
        if value.numel() == 1:
            value = value.item()
        elif value.numel() <= 8:
            value = value.tolist()
        else:
            return f"tensor{tuple(value.shape)}"
    if isinstance(value, np.ndarray):
        value = value.item() if value.size == 1 else value.tolist()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple, dict)):
        try:
            return json.dumps(value, default=str)
        except (TypeError, ValueError):
            return str(value)
    return str(value)


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float, np.number)):
        return True
    return isinstance(value, Tensor) and value.numel() == 1


def _img_tag(png: bytes, *, alt: str = "", title: str | None = None, strip: bool = False) -> str:
    cls = "st-strip" if strip else "st-img"
    t = f' title="{_esc(title)}"' if title else ""
    return f'<img class="{cls}" src="{png_data_uri(png)}" alt="{_esc(alt)}"{t}>'


def _input_png(x: Any) -> tuple[bytes, bool]:
    img = image_for_display(x)
    return array_to_png(img, cmap="gray", vmin=0.0, vmax=1.0), img.shape[0] == 1


def _heat_png(heat: np.ndarray, signed: bool, percentile: float) -> tuple[bytes, float, bool]:
    vmin, vmax = color_limits(heat, signed, percentile)
    png = array_to_png(heat, cmap=default_cmap(signed), vmin=vmin, vmax=vmax)
    return png, vmax, heat.shape[0] == 1


def _scale_text(vmax: float, signed: bool) -> str:
    return f"colour scale ±{vmax:.3g}" if signed else f"colour scale 0 … {vmax:.3g}"


def _per_sample(t: Any, n: int) -> list | None:
    """A per-sample list of scalars from a tensor shaped (B,) or (B, 1), else None."""
    if not isinstance(t, Tensor) or t.dim() == 0 or t.shape[0] != n or t.numel() != n:
        return None
    return t.detach().cpu().reshape(-1).tolist()


def _table_html(header: Sequence[Any] | None, rows: Sequence[Sequence[Any]], caption: str | None = None) -> str:
    out = ['<table class="st-table">']
    if caption:
        out.append(f"<caption>{_esc(caption)}</caption>")
    if header:
        out.append("<thead><tr>" + "".join(f"<th>{_esc(h)}</th>" for h in header) + "</tr></thead>")
    out.append("<tbody>")
    for row in rows:
        cells = []
        for v in row:
            cls = ' class="st-num"' if _is_number(v) else ""
            cells.append(f"<td{cls}>{_esc(_fmt(v))}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _kv_table(pairs: Sequence[tuple[str, Any]], caption: str | None = None) -> str:
    out = ['<table class="st-table">']
    if caption:
        out.append(f"<caption>{_esc(caption)}</caption>")
    out.append("<tbody>")
    for k, v in pairs:
        cls = ' class="st-num"' if _is_number(v) else ""
        out.append(f"<tr><th>{_esc(k)}</th><td{cls}>{_esc(_fmt(v))}</td></tr>")
    out.append("</tbody></table>")
    return "".join(out)


# ---------------------------------------------------------------------------------------
# one explanation
# ---------------------------------------------------------------------------------------
def explanation_html(
    expl,
    *,
    max_samples: int = 8,
    reduce: str = "sum",
    percentile: float = 99.5,
    include_style: bool = True,
) -> str:
    """A ``<section>`` describing one explanation, every image embedded.

    It shows the method, layer, target, run time and model evaluations, the settings as
    a table, a summary of the extras, and for the first ``max_samples`` samples the input
    (when stored) beside its heatmap, captioned with the target class, the score and any
    per-sample extra (e.g. integrated gradients' ``delta``). ``include_style`` adds a
    ``<style>`` block so the fragment also looks right on its own (e.g. in a notebook).
    """
    if max_samples < 1:
        raise InputError(f"max_samples must be at least 1, got {max_samples}")
    heats = to_heatmap(expl.attributions, reduce=reduce)
    n = int(heats.shape[0])
    signed = _is_signed_map(expl, reduce)
    shown = min(n, int(max_samples))

    parts: list[str] = []
    if include_style:
        parts.append(f"<style>{CSS}</style>")
    parts.append('<section class="st-explanation st-report">')
    title = str(expl.method) + (f" @ {expl.layer}" if expl.layer else "")
    parts.append(f"<h3>{_esc(title)}</h3>")

    meta: list[tuple[str, Any]] = [("method", expl.method)]
    if expl.layer:
        meta.append(("layer", expl.layer))
    meta += [
        ("target", expl.target or None),
        ("attributions", f"{tuple(expl.attributions.shape)} {'signed' if expl.signed else 'non-negative'}"),
        (
            "display",
            f"channels reduced by {reduce!r}; "
            + ("diverging colours symmetric around 0" if signed else "sequential colours from 0")
            + f", scaled per map at the {percentile:g}th percentile",
        ),
        ("run time", f"{float(expl.seconds):.4g} s"),
        ("model evaluations", int(expl.n_evaluations)),
    ]
    parts.append(_kv_table(meta))

    settings = dict(expl.settings)
    if settings:
        parts.append("<h4>settings</h4>")
        parts.append(_kv_table(sorted(settings.items(), key=lambda kv: str(kv[0]))))

    per_sample: dict[str, list] = {}
    scores = _per_sample(expl.scores, n) if expl.scores is not None else None
    if scores is not None:
        per_sample["score"] = scores
    extra_rows: list[tuple[str, Any, Any]] = []
    for name, t in expl.extras.items():
        vals = _per_sample(t, n)
        if vals is not None:
            per_sample[str(name)] = vals
            arr = np.asarray(vals, dtype=np.float64)
            summary = f"per sample; mean |{name}| = {np.nanmean(np.abs(arr)):.4g}, max |{name}| = {np.nanmax(np.abs(arr)):.4g}"
        elif isinstance(t, Tensor) and t.numel() > 0:
            f = t.detach().cpu().double()
            summary = f"min {f.min().item():.4g}, mean {f.mean().item():.4g}, max {f.max().item():.4g}"
        else:
            summary = _fmt(t)
        shape = tuple(t.shape) if isinstance(t, Tensor) else "—"
        extra_rows.append((str(name), str(shape), summary))
    if extra_rows:
        parts.append("<h4>extras</h4>")
        parts.append(_table_html(["name", "shape", "summary"], extra_rows))

    parts.append("<h4>samples</h4>")
    if shown < n:
        parts.append(f'<p class="st-note">showing {shown} of {n} samples</p>')
    parts.append('<div class="st-samples">')
    targets = _per_sample(expl.target_indices, n) if expl.target_indices is not None else None
    for i in range(shown):
        imgs = []
        if expl.inputs is not None and i < len(expl.inputs):
            png, strip = _input_png(expl.inputs[i])
            imgs.append(_img_tag(png, alt=f"input {i}", strip=strip))
        heat = heats[i].numpy().astype(np.float64)
        png, vmax, strip = _heat_png(heat, signed, percentile)
        imgs.append(_img_tag(png, alt=f"{expl.method} map {i}", title=_scale_text(vmax, signed), strip=strip))
        cap = [f"#{i}"]
        if targets is not None:
            cap.append(f"class {int(targets[i])}")
        for key, vals in per_sample.items():
            cap.append(f"{key} {_fmt(float(vals[i]))}")
        cap.append(_scale_text(vmax, signed))
        parts.append(
            '<figure class="st-sample"><div class="st-pair">' + "".join(imgs) + "</div>"
            f"<figcaption>{_esc(' · '.join(cap))}</figcaption></figure>"
        )
    parts.append("</div></section>")
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------
# report builder
# ---------------------------------------------------------------------------------------
def _class_name(k: Any, class_names: Any) -> str:
    if isinstance(k, str):
        return k
    k = int(k)
    if class_names is None:
        return str(k)
    if isinstance(class_names, Mapping):
        return str(class_names.get(k, k))
    if 0 <= k < len(class_names):
        return str(class_names[k])
    return str(k)


def _as_class_list(values: Any, n: int, what: str) -> list | None:
    if values is None:
        return None
    if isinstance(values, np.ndarray):
        values = torch.as_tensor(values)
    if isinstance(values, Tensor):
        v = values.detach().cpu()
        if v.dim() == 2:  # logits / probabilities
            v = v.argmax(dim=1)
        values = v.reshape(-1).tolist()
    values = list(values)
    if len(values) != n:
        raise InputError(f"{what} has {len(values)} entries but there are {n} samples")
    return values


class HtmlReport:
    """Build a single self-contained HTML page: headings (with a table of contents),
    paragraphs, tables, figures, explanations and method-comparison grids.

    Every ``add_*`` method returns the report, so calls can be chained::

        report = HtmlReport("MNIST").add_heading("Methods").add_method_grid(x, expls)
        report.save("report.html")
    """

    def __init__(self, title: str = "seethrough report") -> None:
        self.title = str(title)
        self._blocks: list[str] = []
        self._toc: list[tuple[int, str, str]] = []

    def __len__(self) -> int:
        return len(self._blocks)

    # -- content -------------------------------------------------------------------
    def add_heading(self, text: str, level: int = 2) -> HtmlReport:
        """A heading (``level`` 1 to 6), listed in the table of contents."""
        level = int(level)
        if not 1 <= level <= 6:
            raise InputError(f"heading level must be between 1 and 6, got {level}")
        slug = re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")[:48] or "section"
        anchor = f"s{len(self._toc) + 1}-{slug}"
        self._toc.append((level, anchor, str(text)))
        self._blocks.append(f'<h{level} id="{anchor}">{_esc(text)}</h{level}>')
        return self

    def add_paragraph(self, text: str) -> HtmlReport:
        """Plain text (escaped); blank lines start new paragraphs, single newlines break lines."""
        for para in re.split(r"\n\s*\n", str(text).strip()):
            if para.strip():
                self._blocks.append("<p>" + "<br>".join(_esc(line) for line in para.split("\n")) + "</p>")
        return self

    def add_html(self, fragment: str) -> HtmlReport:
        """Raw HTML, inserted as is (the caller is responsible for its safety)."""
        self._blocks.append(str(fragment))
        return self

    def add_table(
        self,
        rows: Sequence[Mapping[str, Any]] | Sequence[Sequence[Any]],
        header: Sequence[Any] | None = None,
        *,
        caption: str | None = None,
    ) -> HtmlReport:
        """A table from a list of dicts (columns: the union of their keys, in order of
        appearance; missing cells are blank) or from ``header`` plus rows of values.
        Floats are shown with 4 significant digits; every cell is escaped."""
        items: list[Any] = list(rows)  # all dicts or all sequences, checked here
        if items and all(isinstance(r, Mapping) for r in items):
            cols: list[Any] = list(header) if header is not None else []
            if header is None:
                for r in items:
                    for k in r:
                        if k not in cols:
                            cols.append(k)
            body = [[r.get(c, "") for c in cols] for r in items]
            self._blocks.append(_table_html(cols, body, caption))
        else:
            body = []
            for r in items:
                if isinstance(r, Mapping) or isinstance(r, (str, bytes)):
                    raise InputError("add_table rows must all be dicts or all be sequences of values")
                body.append(list(r))
            if header is not None and any(len(r) != len(header) for r in body):
                raise InputError(f"every row must have {len(header)} cells to match the header")
            self._blocks.append(_table_html(list(header) if header is not None else None, body, caption))
        return self

    def add_figure(
        self,
        figure: Any,
        caption: str | None = None,
        *,
        dpi: int = 100,
        alt: str | None = None,
    ) -> HtmlReport:
        """An image: a matplotlib Figure (rendered to PNG), PNG bytes, or an array
        (encoded with :func:`~seethrough.report.plot.array_to_png`)."""
        if isinstance(figure, (bytes, bytearray, memoryview)):
            png = bytes(figure)
            if not png.startswith(b"\x89PNG\r\n\x1a\n"):
                raise InputError("add_figure got bytes that are not a PNG image")
        elif isinstance(figure, (np.ndarray, Tensor)):
            png = array_to_png(figure)
        else:
            png = figure_to_png(figure, dpi=dpi)
        alt_text = alt if alt is not None else (caption or "figure")
        cap = f"<figcaption>{_esc(caption)}</figcaption>" if caption else ""
        self._blocks.append(
            f'<figure class="st-figure"><img src="{png_data_uri(png)}" alt="{_esc(alt_text)}">{cap}</figure>'
        )
        return self

    def add_explanation(self, expl, **kwargs) -> HtmlReport:
        """The :func:`explanation_html` section of one explanation."""
        kwargs.setdefault("include_style", False)
        self._blocks.append(explanation_html(expl, **kwargs))
        return self

    def add_method_grid(
        self,
        inputs: Any,
        explanations,
        *,
        masks: Any = None,
        predictions: Any = None,
        labels: Any = None,
        class_names: Any = None,
        reduce: str = "sum",
        indices: Sequence[int] | None = None,
        percentile: float = 99.5,
        caption: str | None = None,
    ) -> HtmlReport:
        """Compare methods on the same samples in one table: a column per sample; rows
        for the input, the ground-truth mask over it (``masks``), the predicted and true
        class (``predictions`` as indices or logits, ``labels``, named by
        ``class_names``), then one row per method with its maps, labelled with the
        method's run time and model evaluations.

        ``explanations`` is a dict ``name -> Explanation`` or a list (named by method).
        ``inputs`` may be None to use those stored in the explanations.
        """
        named = _named_explanations(explanations)
        if inputs is None:
            inputs = next((e.inputs for _, e in named if getattr(e, "inputs", None) is not None), None)
        n = len(inputs) if inputs is not None else len(named[0][1].attributions)
        for name, e in named:
            if len(e.attributions) != n:
                raise InputError(f"explanation {name!r} has {len(e.attributions)} samples but there are {n} inputs")
        if indices is None:
            cols = list(range(n))
        else:
            cols = [int(i) for i in (indices.tolist() if isinstance(indices, Tensor) else indices)]
            for i in cols:
                if not 0 <= i < n:
                    raise InputError(f"index {i} is out of range for {n} samples")
        preds = _as_class_list(predictions, n, "predictions")
        labs = _as_class_list(labels, n, "labels")
        if masks is not None and len(masks) != n:
            raise InputError(f"masks has {len(masks)} entries but there are {n} samples")

        out = ['<div class="st-gridwrap"><table class="st-grid">']
        if caption:
            out.append(f"<caption>{_esc(caption)}</caption>")
        out.append("<thead><tr><th>sample</th>" + "".join(f"<th>#{i}</th>" for i in cols) + "</tr></thead><tbody>")
        if inputs is not None:
            cells = []
            for i in cols:
                png, strip = _input_png(inputs[i])
                cells.append(f"<td>{_img_tag(png, alt=f'input {i}', strip=strip)}</td>")
            out.append("<tr><th>input</th>" + "".join(cells) + "</tr>")
        if masks is not None:
            cells = []
            for i in cols:
                img = inputs[i] if inputs is not None else None
                png = array_to_png(mask_overlay(img, masks[i], color="magenta", alpha=0.15, dim_outside=0.6))
                cells.append(f"<td>{_img_tag(png, alt=f'ground truth {i}')}</td>")
            out.append("<tr><th>ground truth</th>" + "".join(cells) + "</tr>")
        if preds is not None or labs is not None:
            cells = []
            for i in cols:
                lines = []
                ok = None
                if preds is not None and labs is not None:
                    ok = _class_name(preds[i], class_names) == _class_name(labs[i], class_names)
                if preds is not None:
                    cls = "" if ok is None else (' class="st-ok"' if ok else ' class="st-bad"')
                    lines.append(f"<span{cls}>pred: {_esc(_class_name(preds[i], class_names))}</span>")
                if labs is not None:
                    lines.append(f"<span>true: {_esc(_class_name(labs[i], class_names))}</span>")
                cells.append("<td>" + "<br>".join(lines) + "</td>")
            head = " / ".join(w for w, v in (("prediction", preds), ("label", labs)) if v is not None)
            out.append(f"<tr><th>{head}</th>" + "".join(cells) + "</tr>")
        for name, e in named:
            heats = to_heatmap(e.attributions, reduce=reduce)
            signed = _is_signed_map(e, reduce)
            sub = f"{float(e.seconds):.3g} s · {int(e.n_evaluations)} evaluations"
            cells = []
            for i in cols:
                png, vmax, strip = _heat_png(heats[i].numpy().astype(np.float64), signed, percentile)
                cells.append(
                    f"<td>{_img_tag(png, alt=f'{name} {i}', title=_scale_text(vmax, signed), strip=strip)}</td>"
                )
            out.append(f'<tr><th>{_esc(name)}<span class="st-sub">{_esc(sub)}</span></th>' + "".join(cells) + "</tr>")
        out.append("</tbody></table></div>")
        out.append(
            '<p class="st-note">Each map has its own colour scale (hover for it): signed maps '
            f"in {default_cmap(True)} (red positive, blue negative) symmetric around 0, "
            f"non-negative maps in {default_cmap(False)} from 0, at the {percentile:g}th "
            f"percentile of the map; channels reduced by {_esc(repr(reduce))}.</p>"
        )
        self._blocks.append("".join(out))
        return self

    # -- output --------------------------------------------------------------------
    def _toc_html(self) -> str:
        if not self._toc:
            return ""
        items = "".join(
            f'<li class="st-l{level}"><a href="#{anchor}">{_esc(text)}</a></li>' for level, anchor, text in self._toc
        )
        return f'<nav class="st-toc"><strong>Contents</strong><ul>{items}</ul></nav>'

    def render(self) -> str:
        """The complete HTML document."""
        try:
            from importlib.metadata import version

            ver = version("seethrough")
        except Exception:  # pragma: no cover - not installed
            ver = "?"
        stamp = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
        body = "\n".join(self._blocks)
        return (
            "<!doctype html>\n"
            '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{_esc(self.title)}</title>\n<style>{CSS}</style>\n</head>\n"
            '<body>\n<div class="st-report">\n'
            f"<header><h1>{_esc(self.title)}</h1>"
            f'<p class="st-note">Generated by seethrough {_esc(ver)} on {stamp}.</p></header>\n'
            f"{self._toc_html()}\n<main>\n{body}\n</main>\n</div>\n</body>\n</html>\n"
        )

    def save(self, path: str | Path) -> Path:
        """Write :meth:`render` to ``path`` (UTF-8; parent folders are created)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.render(), encoding="utf-8")
        return path

    def _repr_html_(self) -> str:  # notebooks
        return f'<style>{CSS}</style><div class="st-report">{self._toc_html()}{"".join(self._blocks)}</div>'
