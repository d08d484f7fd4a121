"""The latent-walk page: sliders along latent directions that regenerate the image as they
move, and the Peptide Sampler.

Directions (fitted once per server, on first use, with the library's estimators):

* GANs: SeFa (closed form from the first layer's weights), GANSpace (PCA of an early
  layer's activations over sampled codes) and supervised directions (the bundled attribute
  predictor's InterFaceGAN-like boundary; bundled generators only);
* autoencoders: latent coordinates (traversals), principal axes of the codes of real images,
  and, for the scenes, linear probes of the true factors.

``GET /api/latent/image`` decodes ``z0(seed) + sum_i s_i d_i`` and returns the PNG.
The Peptide Sampler runs :class:`seethrough.app.peptides.PeptideLab` (what ``seethrough
latent`` runs): two sequences in, the interpolation table with modlamp descriptors out;
conditioned (rejection) sampling runs as a background job.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

import torch
from fastapi import APIRouter, Body
from fastapi.responses import HTMLResponse, Response

from seethrough._core.errors import ConfigError, InputError

from ..context import BUNDLED_GENERATORS
from ..layout import jsonable, options, page
from ..workers import JobHandle, job_kind
from .jobs import _int

__all__ = ["register", "LatentSpace", "METHODS_GAN", "METHODS_AE"]

METHODS_GAN = ("sefa", "ganspace", "supervised")
METHODS_AE = ("traversal", "pca", "probes")
K = 5  # directions a method offers
MAX_STRENGTH = 5.0
_AE_DATA = {"scenes-vae": "scenes", "mnist-vae": "mnist"}


@dataclasses.dataclass
class LatentSpace:
    """A generator or an autoencoder's decoder, and its fitted directions by method."""

    key: str
    kind: str  # "gan" or "autoencoder"
    model: Any
    latent: Any
    dim: int
    data: str | None
    directions: dict[str, list[Any]] = dataclasses.field(default_factory=dict)

    @property
    def methods(self) -> tuple[str, ...]:
        if self.kind == "gan":
            return METHODS_GAN if self.data else METHODS_GAN[:2]
        return METHODS_AE if self.data == "scenes" else METHODS_AE[:2]


def _load_space(ctx: Any, key: str) -> LatentSpace:
    from seethrough import zoo
    from seethrough.app.autoencoders import AutoencoderSpec
    from seethrough.app.generators import GAN_DATA, GeneratorSpec
    from seethrough.generative import Latent

    c = ctx.config
    served = key == c.generator and key not in BUNDLED_GENERATORS
    weights = c.generator_weights if served else None
    if key in zoo.available() and zoo.info(key).kind == "autoencoder":
        model = AutoencoderSpec(name=key).load()
        latent = Latent(model)
        if latent.latent_dim is None:
            raise ConfigError(f"autoencoder {key!r} does not say its latent size")
        return LatentSpace(key, "autoencoder", model, latent, int(latent.latent_dim), _AE_DATA.get(key))
    gen = GeneratorSpec(key, weights=weights, latent_dim=c.latent_dim if served else None).load()
    return LatentSpace(key, "gan", gen, Latent(gen), int(gen.latent_dim), GAN_DATA.get(key))


def _fit(space: LatentSpace, method: str) -> list[Any]:
    from seethrough.app.gans import DEFAULT_LAYERS, SUPERVISED_ATTRIBUTES, attribute_predictor
    from seethrough.generative import GANSpace, SeFa
    from seethrough.generative.directions import Direction
    from seethrough.generative.gan import SupervisedDirection, latent_layers

    if method not in space.methods:
        raise ConfigError(f"{space.key} offers the directions {', '.join(space.methods)}; got {method!r}")
    k = min(K, space.dim)
    if method == "sefa":
        return list(SeFa(space.model, k=k).fit().directions())
    if method == "ganspace":
        layer = DEFAULT_LAYERS.get(space.key, (None,))[0] or latent_layers(space.model.module)[0]
        gs = GANSpace(space.model, layer=layer, n_components=k, n_samples=2000, seed=0).fit()
        return list(gs.directions())
    if method == "supervised":
        assert space.data is not None
        predict, names = attribute_predictor(space.data)
        out = []
        for f in SUPERVISED_ATTRIBUTES[space.data]:
            sd = SupervisedDirection(
                space.model, _column(predict, names.index(f)), n_samples=1000, seed=0, name=f"sup:{f}"
            )
            out.append(sd.fit())
        return out
    # autoencoders
    if method == "traversal":
        return [Direction.from_vector(torch.eye(space.dim)[i], name=f"dim{i}") for i in range(k)]
    from seethrough.app.generators import real_data
    from seethrough.app.latents import CONTINUOUS_FACTORS, image_direction

    if method == "pca":
        if space.data is None:
            raise ConfigError(f"principal axes need real images of {space.key}'s data; use traversal")
        images = real_data(space.data, n_train=1, n_heldout=500).heldout
        return [image_direction(space.model, images, f"pc{i + 1}")[0] for i in range(k)]
    images = real_data("scenes", n_train=1, n_heldout=1).heldout
    return [image_direction(space.model, images, f)[0] for f in CONTINUOUS_FACTORS[:3]]


def _column(predict: Any, j: int) -> Any:
    return lambda images: predict(images)[:, j]


def space(ctx: Any, key: str) -> Any:
    ctx.generator_choice(key)
    return ctx.slot("latent", key, lambda: _load_space(ctx, key))


def directions(ctx: Any, key: str, method: str) -> tuple[Any, LatentSpace, list[Any]]:
    slot = space(ctx, key)
    with slot.lock:
        sp = slot.get()
        if method not in sp.directions:
            sp.directions[method] = _fit(sp, method)
        return slot, sp, sp.directions[method]


def render(ctx: Any, key: str, method: str, seed: int, strengths: list[float]) -> bytes:
    from seethrough.app.gans import sample_codes
    from seethrough.report.plot import array_to_png, image_for_display

    slot, sp, dirs = directions(ctx, key, method)
    if len(strengths) > len(dirs):
        raise InputError(f"{len(strengths)} strengths for {len(dirs)} directions")
    if any(not -MAX_STRENGTH <= s <= MAX_STRENGTH for s in strengths):
        raise InputError(f"strengths must be within ±{MAX_STRENGTH}")
    z = sample_codes(1, sp.dim, seed)
    for d, s in zip(dirs, strengths):
        if s:
            z = d.apply(z, float(s))
    with slot.lock:
        img = sp.latent.decode(z)[0].detach().float().cpu().clamp(0, 1)
    return array_to_png(image_for_display(img), vmin=0.0, vmax=1.0, cmap="gray", min_size=224)


# ------------------------------------------------------------------------------ peptides
def peptide_lab(ctx: Any) -> Any:
    def load() -> Any:
        from seethrough.app.peptides import PeptideLab

        return PeptideLab.build("peptide-wae", seed=0)

    return ctx.slot("peptides", "peptide-wae", load)


_COLUMNS = ("alpha", "sequence", "valid", "charge", "hydrophobic_moment", "aromaticity", "instability_index",
            "molecular_weight", "amp_z", "amp_seq", "acp_z")  # fmt: skip


def table_json(table: Any, prefer: tuple[str, ...] = _COLUMNS) -> dict[str, Any]:
    names = [c for c in prefer if c in table] + [c for c in table.names if c not in prefer and c != "z_norm"]
    cols = {c: jsonable(table[c]) for c in names}
    n = len(table)
    return {"columns": names, "rows": [[cols[c][i] for c in names] for i in range(n)]}


def interpolate(ctx: Any, body: dict[str, Any]) -> dict[str, Any]:
    a, b = body.get("a"), body.get("b")
    for name, s in (("a", a), ("b", b)):
        if not isinstance(s, str) or not s.strip():
            raise InputError(f"give peptide sequence {name} (one-letter amino-acid codes, e.g. GLFDIVKKVVGALGSL)")
        if len(s) > 100:
            raise InputError(f"sequence {name} has {len(s)} residues; the peptide model takes at most 100")
    a, b = str(a).strip().upper(), str(b).strip().upper()
    steps = _int(body, "steps", 8, 2, 64)
    method = body.get("method", "slerp")
    if method not in ("slerp", "linear"):
        raise ConfigError(f"method must be 'slerp' or 'linear', got {method!r}")
    slot = peptide_lab(ctx)
    with slot.lock:
        walk = slot.get().interpolate(a, b, steps=steps, method=method)
    return {"method": method, **table_json(walk.table)}


def _check_sample(ctx: Any, params: dict[str, Any]) -> dict[str, Any]:
    from seethrough.generative import Condition

    conditions = params.get("conditions") or []
    if isinstance(conditions, str):
        conditions = [c for c in conditions.splitlines() if c.strip()]
    if not isinstance(conditions, list) or not all(isinstance(c, str) for c in conditions):
        raise ConfigError('conditions must be a list of texts such as "amp > 0.8" or "charge in [2, 6]"')
    for c in conditions:
        Condition.parse(c)  # the library's own message on a malformed one
    return {
        "conditions": [c.strip() for c in conditions],
        "n": _int(params, "n", 20, 1, 1000),
        "max_candidates": _int(params, "max_candidates", 20000, 1, 1_000_000),
        "seed": _int(params, "seed", 0, 0, 2**31 - 1),
    }


@job_kind(
    "peptide-sample",
    check=_check_sample,
    title=lambda p: f"peptide sampling: {p['n']} with {' and '.join(p['conditions']) or 'no conditions'}",
)
def run_sample(ctx: Any, params: dict[str, Any], handle: JobHandle) -> dict[str, Any]:
    import json

    from seethrough.app.peptides import PeptideLab
    from seethrough.generative import Condition

    handle.progress(0.05, "fitting the probes on the bundled peptides")
    lab = PeptideLab.build("peptide-wae", seed=0)
    conditions = [Condition.parse(c) for c in params["conditions"]]
    lab.check_names(conditions)
    handle.progress(0.4, "rejection sampling")
    samples, summary = lab.sample(
        conditions, n=params["n"], max_candidates=params["max_candidates"], seed=params["seed"]
    )
    handle.progress(0.95, "writing the table")
    table = table_json(samples.table, ("sequence", "valid", "amp_z", "amp_seq", "charge", "hydrophobic_moment"))
    out = handle.folder / "samples.json"
    out.write_text(json.dumps({"summary": jsonable(summary), **table}, indent=1))
    return {"summary": jsonable(summary), "table": table, "files": [ctx.rel(out)]}


# ------------------------------------------------------------------------------ the page
def register(ctx: Any) -> Any:

    r = APIRouter()

    @r.get("/api/latent/directions")
    def api_directions(generator: str, method: str) -> dict[str, Any]:
        _, sp, dirs = directions(ctx, generator, method)
        return {
            "generator": generator,
            "kind": sp.kind,
            "dim": sp.dim,
            "methods": list(sp.methods),
            "directions": [d.label for d in dirs],
            "max_strength": MAX_STRENGTH,
        }

    @r.get("/api/latent/methods")
    def api_methods(generator: str) -> dict[str, Any]:
        slot = space(ctx, generator)
        sp = slot.get()
        return {"generator": generator, "kind": sp.kind, "dim": sp.dim, "methods": list(sp.methods)}

    @r.get("/api/latent/image")
    def api_image(generator: str, method: str, seed: int = 0, s: str = "") -> Response:
        try:
            strengths = [float(v) for v in s.split(",") if v.strip()]
        except ValueError:
            raise InputError(f"s must be comma-separated numbers, got {s!r}") from None
        if not 0 <= seed < 2**31:
            raise InputError(f"seed must be 0..2^31-1, got {seed}")
        return Response(render(ctx, generator, method, seed, strengths), media_type="image/png")

    @r.post("/api/peptides/interpolate")
    def api_interpolate(body: Annotated[dict[str, Any], Body()]) -> dict[str, Any]:
        return interpolate(ctx, body)

    @r.get("/latent", response_class=HTMLResponse)
    def latent_page() -> str:
        gens = ctx.generator_choices
        body = (
            "<section><h2>Latent directions</h2>"
            '<form id="latent-form" class="row">'
            f'<label>generator <select name="generator" id="latent-generator">{options(gens, gens[0])}</select>'
            '</label><label>directions <select name="method" id="latent-method"></select></label>'
            '<label>seed <input name="seed" id="latent-seed" type="number" value="0" min="0"></label>'
            '<button type="button" id="latent-reset">reset</button></form>'
            '<div class="latent"><img id="latent-image" alt="the generated image" width="224" height="224">'
            '<div id="latent-sliders" class="sliders">loading…</div></div>'
            '<p class="status" id="latent-status"></p>'
            "<p class=note>Each slider moves the code along one direction, in units of z (whose spread is 1 "
            "along any direction); the image is regenerated as it moves. Directions are fitted on first use.</p>"
            "</section>"
            "<section><h2>Peptide Sampler</h2><p>Two sequences in: the interpolation between their codes, each "
            "step decoded and described (modlamp descriptors, and the activity probes on the code and on the "
            "decoded sequence).</p>"
            '<form id="peptide-form" class="row">'
            '<label>a <input name="a" value="GLFDIVKKVVGALGSL" size="28"></label>'
            '<label>b <input name="b" value="KWKLFKKIEKVGQNIRDG" size="28"></label>'
            '<label>steps <input name="steps" type="number" value="8" min="2" max="64"></label>'
            f'<label>path <select name="method">{options(["slerp", "linear"], "slerp")}</select></label>'
            '<button type="submit">Interpolate</button></form><div id="peptide-table"></div>'
            "<h3>Conditioned sampling</h3>"
            '<form id="sample-form" data-kind="peptide-sample"><div class="row">'
            '<label>conditions (one a line) <textarea name="conditions" rows="2" cols="30">amp &gt; 0.8\n'
            "charge in [2, 6]</textarea></label>"
            '<label>samples <input name="n" type="number" value="20" min="1" max="1000"></label>'
            '<label>max candidates <input name="max_candidates" type="number" value="20000" min="1"></label>'
            '<button type="submit">Sample</button></div></form><div class="job-slot"></div></section>'
        )
        return page("Latent walk", body, active="/latent", page_id="latent")

    return r
