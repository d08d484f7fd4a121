"""A browsable, Microscope-style atlas of a model: static HTML and PNG files.

``Atlas(model).build(data, out_dir)`` writes::

    out_dir/index.html                    model summary: the layers, shapes, unit counts
    out_dir/layers/<layer>/index.html     grid of the layer's units (feature visualisations)
    out_dir/layers/<layer>/u<N>.html      one unit: feature visualisation, top-k and bottom-k
                                          dataset examples (full image with the receptive
                                          field marked, and the patch), values, label
    out_dir/layers/<layer>/img/*.png      the unit's images
    out_dir/examples/<index>.png          each data-set image shown anywhere, once
    out_dir/examples.safetensors          the dataset-examples table (DatasetExamples.save)
    out_dir/manifest.json                 settings and what is done

Links are relative and there is no script, so the site opens from disk (``file://``).

The build is incremental. The examples pass checkpoints to ``examples.ckpt`` and
resumes from it; feature visualisations are computed in fixed groups of channels whose
images are written before the manifest records the group; each unit's images are
written before its page, and every file is written to a temporary name and renamed.
Started again on the same folder with the same settings, a build does only what is
missing; with other settings it refuses (the message names the differing settings).
"""

from __future__ import annotations

import hashlib
import html as _html
import json
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .._core.batching import Batching
from .._core.errors import ConfigError, InputError, SeethroughError
from .._core.layers import LayerRef, resolve_layer
from .._core.result import Result
from .._core.sources import ImageSource, as_source
from .examples import DatasetExamples, check_hookable, model_fingerprint, select_layers
from .views import crop_html

__all__ = ["Atlas", "AtlasBuild", "UnitLabels", "FV_GROUP"]

UnitLabels = Mapping[str, Mapping[int, str]]

#: Channels per feature-visualisation call: an interrupted build loses at most one group.
FV_GROUP = 32
#: Unit pages written between two manifest updates.
_PAGE_BLOCK = 16
_MANIFEST_FORMAT = "seethrough.atlas/1"

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif;color:#1d1d1f;margin:0;background:#fff}
main{max-width:1200px;margin:0 auto;padding:1rem 1.5rem 3rem}
nav.crumbs{font-size:.9rem;color:#555;margin:.2rem 0 .8rem}
nav.crumbs a,a{color:#0b57d0;text-decoration:none}a:hover{text-decoration:underline}
h1{font-size:1.6rem;margin:.4rem 0}h2{font-size:1.2rem;margin:1.6rem 0 .5rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.9rem;margin:.5rem 0}
th,td{border:1px solid #dfe1e5;padding:.2rem .55rem;text-align:left}th{background:#f3f4f6}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.note{color:#666;font-size:.88rem}.warn{color:#b3261e;font-weight:600}
.label{display:inline-block;background:#e8f0fe;color:#174ea6;border-radius:4px;padding:0 .4rem;font-size:.85rem}
.units{display:flex;flex-wrap:wrap;gap:.5rem}
.unit{width:104px;border:1px solid #e3e5e8;border-radius:4px;padding:3px;font-size:.75rem;text-align:center}
.unit>img{width:96px;height:96px;display:block;margin:0 auto;background:#eee}
.unit .val{color:#555}.unit.dead{opacity:.55}
.fv{width:224px;height:224px;border:1px solid #ddd}
.exs{display:flex;flex-wrap:wrap;gap:.6rem}
figure.ex{margin:0;border:1px solid #eee;border-radius:4px;padding:4px;background:#fafafa}
figure.ex figcaption{font-size:.75rem;color:#444;max-width:236px}
.pair{display:flex;gap:4px}
.frame{position:relative;width:112px;height:112px;line-height:0}
.frame img{width:112px;height:112px;image-rendering:pixelated}
.patch{position:relative;overflow:hidden;display:block;line-height:0;background:#e8e8e8;margin:auto}
.patch img{position:absolute;max-width:none;image-rendering:pixelated}
.pair>.patch{align-self:center}
.unit .patch{margin:0 auto}
.box{position:absolute;border:2px solid #ff2d55;box-sizing:border-box}
.pager{display:flex;justify-content:space-between;font-size:.9rem;margin:.4rem 0}
"""


# ---------------------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------------------
def _esc(v: Any) -> str:
    return _html.escape(str(v), quote=True)


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _png(img: np.ndarray) -> bytes:
    """``(H, W)`` or ``(H, W, 3)`` float in [0, 1] to PNG bytes at native size."""
    import io

    from PIL import Image

    data = (np.clip(np.nan_to_num(img), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(data), mode="L" if data.ndim == 2 else "RGB").save(
        buf, format="PNG", compress_level=1
    )
    return buf.getvalue()


def _display(x: Tensor) -> np.ndarray:
    from ..report.plot import image_for_display

    return image_for_display(x.detach().cpu().float())


def _slug(name: str, taken: set[str]) -> str:
    s = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "layer"
    base, i = s, 1
    while s.lower() in taken:
        i += 1
        s = f"{base}-{i}"
    taken.add(s.lower())
    return s


def _page(title: str, crumbs: Sequence[tuple[str, str | None]], body: str) -> bytes:
    nav = " › ".join(f'<a href="{_esc(h)}">{_esc(t)}</a>' if h else _esc(t) for t, h in crumbs)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width,initial-scale=1"><title>{_esc(title)}</title>'
        f'<style>{CSS}</style></head><body><main><nav class="crumbs">{nav}</nav>{body}</main></body></html>\n'
    ).encode()


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def _labels_for(unit_labels: UnitLabels | None, layer: str) -> dict[int, str]:
    if not unit_labels or layer not in unit_labels:
        return {}
    out = {}
    for k, v in unit_labels[layer].items():
        try:
            out[int(k)] = str(v)
        except (TypeError, ValueError):
            raise InputError(f"unit_labels[{layer!r}] has the key {k!r}; keys must be unit indices (ints)") from None
    return out


@dataclass(frozen=True, eq=False)
class AtlasBuild(Result):
    """What a build did. ``seconds_*`` are this run's times of the three stages (the
    index page also shows the totals over all runs on this folder)."""

    index: Path
    out_dir: Path
    layers: tuple[str, ...]
    n_units: int
    n_examples: int
    seconds_examples: float
    seconds_featurevis: float
    seconds_writing: float
    seconds_total: float
    resumed: bool
    featurevis_channels: int  # feature visualisations computed by this run
    pages_written: int  # unit pages written by this run
    featurevis: str  # "done", "off" (steps=0) or a reason it is missing


# ---------------------------------------------------------------------------------------
# the builder
# ---------------------------------------------------------------------------------------
class Atlas:
    """Build a static, browsable atlas of ``model``'s units on a data set.

    Parameters
    ----------
    model:
        The network (eval mode is used; the model is left as it was).
    layers:
        ``None`` (every convolution), ``"all"`` (convolutions and linear layers), or
        names/modules.
    top_k:
        Dataset examples shown per unit, both the most and the least activating.
    steps:
        Optimisation steps of each feature visualisation; 0 builds the atlas without them.
    visualize:
        The feature-visualisation step, with the signature of
        :func:`seethrough.featurevis.visualize_channels` (the default); tests pass a
        cheaper one.
    unit_labels:
        Network-dissection labels, ``{layer: {unit: "stripes (IoU 0.31)"}}``, shown on the
        unit pages and in the layer listings.
    batching:
        Batch size (or :class:`Batching`) of the examples pass.
    seed, size, input_range, mean, std, featurevis_batching:
        Passed to ``visualize`` (``size`` defaults to the data's image size).
    title:
        Title of the index page (default: the model's class name).
    progress:
        Called with a short message as the build advances.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        layers: str | LayerRef | Sequence[LayerRef] | None = None,
        top_k: int = 9,
        steps: int = 256,
        visualize: Callable[..., Any] | None = None,
        unit_labels: UnitLabels | None = None,
        batching: Batching | int | None = None,
        seed: int = 0,
        size: int | None = None,
        input_range: tuple[float, float] | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        featurevis_batching: Batching | int | None = None,
        checkpoint_every: int = 20,
        title: str | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self.model, self.layers, self.top_k, self.batching = model, layers, top_k, batching
        self.steps, self.visualize, self.seed, self.size = steps, visualize, seed, size
        self.input_range, self.mean, self.std = input_range, mean, std
        self.featurevis_batching, self.checkpoint_every = featurevis_batching, checkpoint_every
        self.unit_labels, self.title, self.progress = unit_labels, title, progress

    # -- entry point --------------------------------------------------------------------
    def build(self, data: Any, out_dir: str | Path) -> AtlasBuild:
        """Build (or finish building) the atlas of ``data`` in ``out_dir``."""
        t_start = time.perf_counter()
        if not isinstance(self.top_k, int) or isinstance(self.top_k, bool) or self.top_k < 1:
            raise ConfigError(f"top_k must be a positive int, got {self.top_k!r}")
        if not isinstance(self.steps, int) or isinstance(self.steps, bool) or self.steps < 0:
            raise ConfigError(f"steps must be a non-negative int (0: no feature visualisation), got {self.steps!r}")
        check_hookable(self.model)
        source = as_source(data)
        if len(source) == 0:
            raise InputError("the data set is empty: an atlas needs images to rank; give at least one image")
        names = select_layers(self.model, self.layers)
        if self.unit_labels is not None:
            if not isinstance(self.unit_labels, Mapping):
                raise InputError("unit_labels must map layer names to {unit index: label}")
            for layer in self.unit_labels:
                if layer not in names:
                    resolve_layer(self.model, layer)  # unknown: suggests names
                _labels_for(self.unit_labels, layer)
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        visualize = self._visualizer() if self.steps > 0 else None
        config = {
            "model": model_fingerprint(self.model),
            "layers": names,
            "top_k": self.top_k,
            "data": source.fingerprint(),
            "n": len(source),
            "steps": self.steps,
            "seed": self.seed,
            "size": self.size,
            "input_range": None if self.input_range is None else list(self.input_range),
            "mean": None if self.mean is None else list(self.mean),
            "std": None if self.std is None else list(self.std),
            "visualize": None
            if visualize is None
            else f"{getattr(visualize, '__module__', '')}."
            f"{getattr(visualize, '__qualname__', type(visualize).__name__)}",
        }
        manifest, resumed = self._manifest(out, config)
        self._save_manifest(out, manifest)

        # 1. dataset examples (resumable pass) ---------------------------------------
        t0 = time.perf_counter()
        ex_path = out / "examples.safetensors"
        if manifest["stages"].get("examples") == "done" and ex_path.is_file():
            ex = DatasetExamples.load(ex_path)
        else:
            self._say("examples: streaming over the data set")
            ex = DatasetExamples(
                self.model,
                layers=names,
                top_k=self.top_k,
                batching=self.batching,
                checkpoint=out / "examples.ckpt",
                checkpoint_every=self.checkpoint_every,
                progress=self.progress,
            ).fit(source)
            ex.save(ex_path)
            manifest["stages"]["examples"] = "done"
            manifest["seconds"]["examples"] += time.perf_counter() - t0
            self._save_manifest(out, manifest)
        t_examples = time.perf_counter() - t0

        slugs = manifest.setdefault("slugs", {})
        taken = {s.lower() for s in slugs.values()}
        for nm in names:
            if nm not in slugs:
                slugs[nm] = _slug(nm, taken)

        # 2. feature visualisations ------------------------------------------------
        t0 = time.perf_counter()
        fv_count, fv_status = 0, "off"
        if visualize is not None:
            fv_count, fv_status = self._featurevis(out, ex, source, visualize, manifest)
            manifest["seconds"]["featurevis"] += time.perf_counter() - t0
            self._save_manifest(out, manifest)
        t_fv = time.perf_counter() - t0

        # 3. pages -------------------------------------------------------------------
        t0 = time.perf_counter()
        written = self._pages(out, ex, source, manifest, fv_status)
        manifest["seconds"]["writing"] += time.perf_counter() - t0
        manifest["stages"]["pages"] = "done"
        self._save_manifest(out, manifest)
        self._index(out, ex, source, manifest, fv_status)
        t_write = time.perf_counter() - t0
        n_units = sum(ex.n_units(nm) for nm in names)
        return AtlasBuild(
            index=out / "index.html",
            out_dir=out,
            layers=tuple(names),
            n_units=n_units,
            n_examples=ex.n_examples_,
            seconds_examples=t_examples,
            seconds_featurevis=t_fv,
            seconds_writing=t_write,
            seconds_total=time.perf_counter() - t_start,
            resumed=resumed,
            featurevis_channels=fv_count,
            pages_written=written,
            featurevis=fv_status,
        )

    # -- parts ----------------------------------------------------------------------------
    def _say(self, msg: str) -> None:
        if self.progress is not None:
            self.progress(msg)

    def _visualizer(self) -> Callable[..., Any]:
        if self.visualize is not None:
            if not callable(self.visualize):
                raise ConfigError(f"visualize must be callable, got {type(self.visualize).__name__}")
            return self.visualize
        try:
            from ..featurevis import visualize_channels
        except ImportError as e:
            raise ConfigError(
                f"feature visualisation is not available ({e}); build the atlas without it "
                f"(steps=0, CLI: --steps 0) or pass visualize=<function>"
            ) from e
        return visualize_channels

    def _manifest(self, out: Path, config: dict) -> tuple[dict, bool]:
        """The manifest to continue from (and whether there was one), or a fresh one."""
        path = out / "manifest.json"
        fresh = {
            "format": _MANIFEST_FORMAT,
            "config": config,
            "stages": {},
            "featurevis": {},
            "pages": {},
            "seconds": {"examples": 0.0, "featurevis": 0.0, "writing": 0.0},
        }
        if not path.is_file():
            if any(out.iterdir()):
                raise ConfigError(f"{str(out)!r} is not empty and holds no atlas; choose an empty or new output folder")
            return fresh, False
        try:
            m = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ConfigError(f"cannot read {str(path)!r} ({e}); delete the folder to start over") from e
        if m.get("format") != _MANIFEST_FORMAT:
            raise ConfigError(f"{str(path)!r} is not an atlas manifest; choose another output folder")
        old = m.get("config", {})
        diff = sorted(k for k in set(old) | set(config) if old.get(k) != config.get(k))
        if diff and not m.get("stages") and not (out / "examples.ckpt").is_file():
            return fresh, False  # an earlier build with other settings stopped before doing anything
        if diff:
            raise ConfigError(
                f"{str(out)!r} holds an atlas built with other settings (different {', '.join(diff)}); "
                f"choose another output folder, or delete it to rebuild"
            )
        for k, v in fresh.items():
            m.setdefault(k, v)
        return m, True

    @staticmethod
    def _save_manifest(out: Path, manifest: dict) -> None:
        _atomic_write(out / "manifest.json", json.dumps(manifest, indent=1, sort_keys=True).encode())

    def _fv_kwargs(self, source: ImageSource, input_shape: tuple[int, ...]) -> dict:
        size: int | tuple[int, int] | None = self.size
        if size is None and len(input_shape) == 3:
            size = input_shape[1] if input_shape[1] == input_shape[2] else (input_shape[1], input_shape[2])
        kw: dict[str, Any] = {"size": size, "steps": self.steps, "seed": self.seed}
        for k in ("input_range", "mean", "std"):
            v = getattr(self, k)
            if v is None and k in ("mean", "std"):
                v = getattr(source, k, None)
            if v is not None:
                kw[k] = v
        if self.featurevis_batching is not None:
            kw["batching"] = self.featurevis_batching
        return kw

    def _featurevis(self, out: Path, ex: DatasetExamples, source, visualize, manifest) -> tuple[int, str]:
        kw = self._fv_kwargs(source, ex.input_shape_)
        done_all = manifest["featurevis"]
        count, failed = 0, []
        for nm in ex.layers_:
            slug = manifest["slugs"][nm]
            U = ex.n_units(nm)
            entry = done_all.setdefault(nm, {"groups": [], "error": None})
            if entry.get("error"):
                failed.append(nm)
                continue
            for g0 in range(0, U, FV_GROUP):
                if g0 in entry["groups"]:
                    continue
                channels = list(range(g0, min(g0 + FV_GROUP, U)))
                self._say(f"feature visualisation: {nm} channels {channels[0]}..{channels[-1]} of {U}")
                try:
                    res = visualize(self.model, nm, channels, **kw)
                except SeethroughError as e:
                    entry["error"] = str(e)
                    failed.append(nm)
                    self._save_manifest(out, manifest)
                    break
                images = getattr(res, "images", res)
                if not isinstance(images, Tensor) or images.shape[0] != len(channels):
                    raise ConfigError(
                        f"the feature visualisation returned {type(images).__name__} "
                        f"{tuple(images.shape) if isinstance(images, Tensor) else ''} for {len(channels)} "
                        f"channels; it must return one image per channel (.images of shape (K, C, H, W))"
                    )
                for c, img in zip(channels, images):
                    _atomic_write(out / "layers" / slug / "img" / f"u{c}_fv.png", _png(_display(img)))
                count += len(channels)
                entry["groups"].append(g0)
                self._save_manifest(out, manifest)
        if failed:
            return count, "failed for " + ", ".join(failed)
        return count, "done"

    def _pages(self, out: Path, ex: DatasetExamples, source: ImageSource, manifest: dict, fv_status: str) -> int:
        written = 0
        images_dir = out / "examples"
        shown: set[int] = {int(p.stem) for p in images_dir.glob("*.png")} if images_dir.is_dir() else set()
        image_like = len(ex.input_shape_) == 3
        for li, nm in enumerate(ex.layers_):
            slug = manifest["slugs"][nm]
            labels = _labels_for(self.unit_labels, nm)
            fv_entry = manifest["featurevis"].get(nm, {})
            key = hashlib.blake2b(
                json.dumps(
                    [sorted(labels.items()), sorted(fv_entry.get("groups", [])), fv_entry.get("error")]
                ).encode(),
                digest_size=8,
            ).hexdigest()
            page = manifest["pages"].get(nm)
            if page is None or page.get("key") != key:
                page = manifest["pages"][nm] = {"key": key, "done": 0}
            U = ex.n_units(nm)
            ldir = out / "layers" / slug
            for b0 in range(page["done"] - page["done"] % _PAGE_BLOCK, U, _PAGE_BLOCK):
                units = range(max(b0, page["done"]), min(b0 + _PAGE_BLOCK, U))
                if image_like:
                    # the data-set images these units show that are not written yet, in one read
                    need = torch.cat(
                        [
                            ex.top_indices_[nm][units.start : units.stop].reshape(-1),
                            ex.bottom_indices_[nm][units.start : units.stop].reshape(-1),
                        ]
                    )
                    rows = sorted(set(need.tolist()) - shown)
                    if rows:
                        for i, img in zip(rows, source.for_display(source.get(rows))):
                            _atomic_write(images_dir / f"{i}.png", _png(_display(img)))
                        shown.update(rows)
                for u in units:
                    self._unit_page(ldir, ex, nm, u, labels, image_like, fv_entry)
                    written += 1
                page["done"] = units.stop
                self._save_manifest(out, manifest)
            self._say(f"pages: {nm} ({U} units)")
            _atomic_write(ldir / "index.html", self._layer_html(ex, nm, li, manifest, labels, fv_entry))
        return written

    # -- HTML ---------------------------------------------------------------------------
    def _fv_available(self, fv_entry: Mapping, u: int) -> bool:
        return (u // FV_GROUP) * FV_GROUP in fv_entry.get("groups", [])

    def _thumb(self, ex: DatasetExamples, nm: str, u: int, fv_entry: Mapping) -> str:
        """The unit's thumbnail: its feature visualisation, else its top example's patch."""
        if self._fv_available(fv_entry, u):
            return f'<img src="img/u{u}_fv.png" alt="unit {u}" loading="lazy">'
        if len(ex.input_shape_) == 3 and ex.top_indices_[nm].shape[1]:
            i = int(ex.top_indices_[nm][u, 0])
            H, W = ex.input_shape_[1], ex.input_shape_[2]
            boxes = ex.top_boxes_[nm]
            y0, x0, y1, x1 = (int(v) for v in boxes[u, 0]) if boxes is not None else (0, 0, H - 1, W - 1)
            return crop_html(f"../../examples/{i}.png", (y0, x0, y1, x1), H, W, 96, f"unit {u}: top example {i}")
        return ""

    def _unit_page(self, ldir: Path, ex, nm, u, labels, image_like, fv_entry) -> None:
        info = ex.unit(nm, u)
        U = ex.n_units(nm)
        H = W = None
        if image_like:
            H, W = ex.input_shape_[1], ex.input_shape_[2]
        parts: list[str] = []
        title = f"{nm} · unit {u}"
        parts.append(f"<h1>{_esc(title)}</h1>")
        prev_link = f'<a href="u{u - 1}.html" rel="prev">‹ unit {u - 1}</a>' if u > 0 else "<span></span>"
        next_link = f'<a href="u{u + 1}.html" rel="next">unit {u + 1} ›</a>' if u + 1 < U else "<span></span>"
        pager = f'<div class="pager">{prev_link}<a href="index.html">all {U} units of {_esc(nm)}</a>{next_link}</div>'
        parts.append(pager)
        if u in labels:
            parts.append(f'<p>Dissection label: <span class="label">{_esc(labels[u])}</span></p>')
        if info.n_examples and info.never_positive:
            parts.append(
                f'<p class="warn">This unit never activates on this data: its activation is at most 0 '
                f"on all {info.n_examples} examples (a dead unit here). The rankings below order "
                f"non-positive values.</p>"
            )
        elif info.constant:
            parts.append(
                f'<p class="warn">This unit gives the same activation ({_fmt(float(info.top_values[0]))}) on every '
                f"example: the ranking carries no information.</p>"
            )
        if self._fv_available(fv_entry, u):
            parts.append(
                f'<h2>Feature visualisation</h2><img class="fv" src="img/u{u}_fv.png" '
                f'alt="feature visualisation of unit {u}">'
                f'<p class="note">An input optimised to maximise this unit ({self.steps} steps, seed {self.seed}).</p>'
            )
        elif fv_entry.get("error"):
            parts.append(f'<p class="note">No feature visualisation: {_esc(fv_entry["error"])}</p>')
        act = "maximum over positions of the channel" if ex.top_positions_[nm].shape[-1] else "the unit's output"
        stats = [
            ("activation", act),
            ("highest", _fmt(float(info.top_values[0])) if info.top_values.numel() else "—"),
            ("lowest", _fmt(float(info.bottom_values[0])) if info.bottom_values.numel() else "—"),
            ("mean ± std over the data", f"{_fmt(info.mean)} ± {_fmt(info.std)}"),
            ("examples with activation > 0", f"{100 * info.frac_positive:.1f}% of {info.n_examples}"),
        ]
        parts.append(
            "<table>" + "".join(f"<tr><th>{_esc(k)}</th><td>{_esc(v)}</td></tr>" for k, v in stats) + "</table>"
        )
        for kind, label in (("top", "Most activating examples"), ("bottom", "Least activating examples")):
            vals = getattr(info, f"{kind}_values")
            if not vals.numel():
                continue
            idx = getattr(info, f"{kind}_indices")
            pos = getattr(info, f"{kind}_positions")
            boxes = getattr(info, f"{kind}_boxes")
            parts.append(f'<h2>{label}</h2><div class="exs">')
            for r in range(vals.numel()):
                i = int(idx[r])
                where = f" at {tuple(int(p) for p in pos[r])}" if pos.shape[-1] else ""
                cap = f"#{i} · {_fmt(float(vals[r]))}{where}"
                if image_like:
                    assert H is not None and W is not None  # set above for image-like inputs
                    frame = f'<img src="../../examples/{i}.png" alt="example {i}">'
                    patch = ""
                    if boxes is not None:
                        b = [int(v) for v in boxes[r]]
                        y0, x0, y1, x1 = b[0], b[1], b[2], b[3]
                        style = (
                            f"left:{100 * x0 / W:.2f}%;top:{100 * y0 / H:.2f}%;"
                            f"width:{100 * (x1 - x0 + 1) / W:.2f}%;height:{100 * (y1 - y0 + 1) / H:.2f}%"
                        )
                        frame += f'<span class="box" style="{style}"></span>'
                        patch = crop_html(
                            f"../../examples/{i}.png",
                            (y0, x0, y1, x1),
                            H,
                            W,
                            112,
                            f"receptive field patch of example {i}",
                        )
                        cap += f" · patch rows {y0}-{y1}, cols {x0}-{x1}"
                    parts.append(
                        f'<figure class="ex"><div class="pair"><div class="frame">{frame}</div>{patch}</div>'
                        f"<figcaption>{_esc(cap)}</figcaption></figure>"
                    )
                else:
                    parts.append(f'<figure class="ex"><figcaption>{_esc(cap)}</figcaption></figure>')
            parts.append("</div>")
        how = ex.receptive_field_[nm]
        if how != "none":
            parts.append(
                f'<p class="note">Patches: the receptive field of the maximum\'s position, by '
                f"{'layer arithmetic' if how == 'arithmetic' else 'the non-zero input gradient of that activation'}"
                f"; the red box marks it on the full image.</p>"
            )
        parts.append(pager)
        crumbs = [("atlas", "../../index.html"), (nm, "index.html"), (f"unit {u}", None)]
        _atomic_write(ldir / f"u{u}.html", _page(title, crumbs, "".join(parts)))

    def _layer_html(self, ex, nm, li, manifest, labels, fv_entry) -> bytes:
        U = ex.n_units(nm)
        shape = ex.unit_shapes_[nm]
        names = ex.layers_
        parts = [f"<h1>{_esc(nm)}</h1>"]
        nav = []
        if li > 0:
            nav.append(f'<a href="../{manifest["slugs"][names[li - 1]]}/index.html">‹ {_esc(names[li - 1])}</a>')
        else:
            nav.append("<span></span>")
        nav.append('<a href="../../index.html">all layers</a>')
        if li + 1 < len(names):
            nav.append(f'<a href="../{manifest["slugs"][names[li + 1]]}/index.html">{_esc(names[li + 1])} ›</a>')
        else:
            nav.append("<span></span>")
        parts.append(f'<div class="pager">{"".join(nav)}</div>')
        field = ex.fields_.get(nm)
        rf = (
            f"{'x'.join(map(str, field.span))} pixels, stride {'x'.join(map(str, field.stride))} (layer arithmetic)"
            if field is not None
            else {"gradient": "per example, from the input gradient", "none": "the whole input"}.get(
                ex.receptive_field_[nm], "—"
            )
        )
        parts.append(
            f"<p>{U} units · output shape {_esc(tuple(shape))} per image · receptive field {_esc(rf)}"
            + (f" · {len(labels)} dissection labels" if labels else "")
            + "</p>"
        )
        if fv_entry.get("error"):
            parts.append(f'<p class="note">No feature visualisations: {_esc(fv_entry["error"])}</p>')
        parts.append('<div class="units">')
        top = ex.top_values_[nm]
        frac = ex.frac_positive_[nm]
        for u in range(U):
            img = self._thumb(ex, nm, u, fv_entry)
            dead = float(frac[u]) == 0.0
            val = _fmt(float(top[u, 0])) if top.shape[1] else "—"
            lab = f'<br><span class="label">{_esc(labels[u])}</span>' if u in labels else ""
            parts.append(
                f'<a class="unit{" dead" if dead else ""}" href="u{u}.html">{img}unit {u}'
                f'<br><span class="val">max {val}{" · dead" if dead else ""}</span>{lab}</a>'
            )
        parts.append("</div>")
        crumbs = [("atlas", "../../index.html"), (nm, None)]
        return _page(f"{nm} · atlas", crumbs, "".join(parts))

    def _index(self, out: Path, ex: DatasetExamples, source: ImageSource, manifest: dict, fv_status: str) -> None:
        model = self.model
        n_params = sum(p.numel() for p in model.parameters())
        title = self.title or f"{type(model).__name__} atlas"
        parts = [f"<h1>{_esc(title)}</h1>"]
        data = dict(ex.data_)
        parts.append(
            f"<p>{_esc(type(model).__name__)} · {n_params:,} parameters · input {_esc(tuple(ex.input_shape_))} · "
            f"data: {_esc(data.get('name', 'images'))}, {ex.n_examples_} images · top {self.top_k} and bottom "
            f"{self.top_k} examples per unit</p>"
        )
        rows = []
        for nm in ex.layers_:
            mod = resolve_layer(model, nm)[1]
            U = ex.n_units(nm)
            labels = _labels_for(self.unit_labels, nm)
            dead = int((ex.frac_positive_[nm] == 0).sum())
            field = ex.fields_.get(nm)
            rf = "x".join(map(str, field.span)) if field is not None else ex.receptive_field_[nm]
            rows.append(
                f'<tr><td><a href="layers/{_esc(manifest["slugs"][nm])}/index.html">{_esc(nm)}</a></td>'
                f"<td>{_esc(type(mod).__name__)}</td><td>{_esc(tuple(ex.unit_shapes_[nm]))}</td>"
                f'<td class="num">{U}</td><td class="num">{dead}</td><td>{_esc(rf)}</td>'
                f'<td class="num">{len(labels) if labels else ""}</td></tr>'
            )
        parts.append(
            "<h2>Layers</h2><table><thead><tr><th>layer</th><th>type</th><th>output shape</th><th>units</th>"
            "<th>never active</th><th>receptive field</th><th>labels</th></tr></thead><tbody>"
            + "".join(rows)
            + "</tbody></table>"
        )
        sec = manifest["seconds"]
        fv_text = {"off": "off (steps=0)", "done": f"{self.steps} steps per unit, seed {self.seed}"}.get(
            fv_status, fv_status
        )
        parts.append(
            "<h2>Build</h2><table>"
            f"<tr><th>feature visualisation</th><td>{_esc(fv_text)}</td></tr>"
            f"<tr><th>activation of a conv unit</th><td>maximum over positions (its position is the patch centre)</td></tr>"
            f'<tr><th>time: dataset examples</th><td class="num">{sec["examples"]:.1f} s</td></tr>'
            f'<tr><th>time: feature visualisation</th><td class="num">{sec["featurevis"]:.1f} s</td></tr>'
            f'<tr><th>time: writing</th><td class="num">{sec["writing"]:.1f} s</td></tr>'
            '</table><p class="note">Times are summed over all runs that built this folder.</p>'
        )
        _atomic_write(out / "index.html", _page(title, [("atlas", None)], "".join(parts)))
