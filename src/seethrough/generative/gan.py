"""Directions in the latent space of a GAN generator (or of any decoder ``z -> outputs``).

Every class here is a :class:`~seethrough.generative.directions.Direction` (``vector_`` is a
unit vector in z), so what it finds works wherever a direction does:
``Latent(Generator(g)).traverse``, :func:`~seethrough.generative.disentangle.factor_response`,
:meth:`~seethrough.generative.directions.Direction.project_out`.

* :class:`SeFa` (Shen & Zhou 2021, "Closed-form factorization of latent semantics in GANs"):
  no sampling; the first layer that takes z computes ``A z + b``, and the directions ``n`` of
  unit norm that this layer amplifies most (``max |A n|^2``) are the leading eigenvectors of
  ``A^T A``.
* :class:`GANSpace` (Härkönen et al. 2020, "GANSpace: discovering interpretable GAN controls"):
  PCA of one layer's activations over ``z ~ N(0, I)``; each principal component is carried back
  to z by the paper's linear regression of the codes on the PCA coordinates (its recipe for
  BigGAN-like generators whose intermediate layers are not in z).
* :class:`SupervisedDirection` (InterFaceGAN, Shen et al. 2020, "Interpreting the latent space
  of GANs for semantic face editing"): sample codes, generate, label the outputs with an
  attribute function, and take the normal of a linear boundary fitted in z. Conditional
  manipulation (change one attribute, keep another) is ``a.project_out(b)``.
* :func:`layer_edit` / :func:`layer_traverse`: GANSpace's layer-restricted edits, for
  generators with per-layer latent inputs (``n_latent_layers = L``: codes ``(N, L, Z)``, as
  BigGAN's hierarchical z or StyleGAN's w+): the direction moves only the inputs of the chosen
  layers.

A generator is any ``nn.Module`` mapping ``z (N, Z)`` to outputs with an integer
``latent_dim`` (or a :class:`~seethrough.generative.protocol.Generator` wrapper); an
autoencoder (``encode``/``decode``) is used through its decoder. Layer names are those of the
module given (for a :class:`~seethrough.generative.protocol.Generator`, of the module it wraps).
Every model call runs inside :func:`~seethrough._core.state.model_guard` (of the module given,
or the one a ``Generator`` wraps).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .._core.batching import Batching, as_batching
from .._core.call import call_model
from .._core.capture import forward_chunk_rows, run_capture, stream_activations
from .._core.errors import ConfigError, InputError, LayerError
from .._core.layers import LayerRef, resolve_layer
from .._core.seeds import check_seed, generator
from .._core.state import model_guard
from .._core.validation import model_device
from .directions import Direction, ProbeDirection, as_direction
from .latent import LatentWalk
from .protocol import DecoderModule, Generator
from .table import AttributeTable

__all__ = [
    "SeFa",
    "GANSpace",
    "SupervisedDirection",
    "latent_layers",
    "layer_edit",
    "layer_traverse",
]

#: Rows of the probe batch used to find the layers that take z.
_PROBE_ROWS = 3
#: A layer "takes z" when each row of its input is a positive multiple of the code (cosine
#: above this), so that a PixelNorm-style rescaling of z before the first layer still counts.
_SAME_DIRECTION = 1.0 - 1e-6


# ----------------------------------------------------------------------------- helpers
def _as_generator(model: nn.Module, latent_dim: int | None = None) -> tuple[Generator, nn.Module]:
    """``(generator, root)``: ``model`` as a :class:`~seethrough.generative.protocol.Generator`
    (an autoencoder through its ``decode``) and the module whose dotted names address its layers
    (the model as given; for a ``Generator``, the module it wraps)."""
    if not isinstance(model, nn.Module):
        raise ConfigError(
            f"the generator must be a torch.nn.Module mapping codes z (N, Z) to outputs, got {type(model).__name__}"
        )
    if isinstance(model, Generator):
        if latent_dim not in (None, model.latent_dim):
            raise ConfigError(f"latent_dim={latent_dim} but the Generator has latent_dim={model.latent_dim}")
        return model, model.module
    if callable(getattr(model, "encode", None)) and callable(getattr(model, "decode", None)):
        return Generator(DecoderModule(model), latent_dim=latent_dim), model  # an autoencoder: its decoder
    return Generator(model, latent_dim=latent_dim), model


def _resolve(root: nn.Module, layer: LayerRef) -> tuple[str, nn.Module]:
    """A layer of ``root`` by dotted name or module (near names suggested on a miss); the
    ``module.`` prefix of a name given relative to a Generator wrapper is accepted too."""
    try:
        return resolve_layer(root, layer)
    except LayerError:
        if isinstance(layer, str) and layer.startswith("module."):
            with contextlib.suppress(LayerError):
                return resolve_layer(root, layer[len("module.") :])
        raise


def _check_int(value: Any, what: str, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < low:
        raise ConfigError(f"{what} must be an int >= {low}, got {value!r}")
    return int(value)


def _probe_codes(gen: Generator) -> Tensor:
    dev = model_device(gen) or torch.device("cpu")
    z = torch.randn(_PROBE_ROWS, gen.latent_dim, generator=generator(0))
    return z.to(dev)


def _weighted_modules(root: nn.Module) -> list[tuple[str, nn.Module]]:
    """Modules with their own ``weight`` parameter, in ``named_modules`` order."""
    out = []
    for name, m in root.named_modules():
        if name and isinstance(getattr(m, "weight", None), Tensor):
            out.append((name, m))
    return out


def _takes_codes(x: Any, z: Tensor) -> bool:
    if not isinstance(x, Tensor) or x.dim() < 2 or x.shape[0] != z.shape[0] or x[0].numel() != z.shape[1]:
        return False
    xf = x.detach().reshape(z.shape[0], -1).double()
    zz = z.detach().double()
    norms = xf.norm(dim=1) * zz.norm(dim=1)
    if not bool((norms > 0).all()):
        return False
    return bool(((xf * zz).sum(dim=1) / norms > _SAME_DIRECTION).all())


def _inputs_of(gen: Generator, root: nn.Module) -> dict[str, bool]:
    """``{name: takes z}`` for every module with a weight that runs on a probe batch, in the
    order they run (call inside ``model_guard``)."""
    z = _probe_codes(gen)
    seen: dict[str, bool] = {}

    def make(name: str) -> Callable[[nn.Module, tuple[Any, ...]], None]:
        def hook(_m: nn.Module, args: tuple[Any, ...]) -> None:
            if name not in seen:
                seen[name] = bool(args) and _takes_codes(args[0], z)

        return hook

    with contextlib.ExitStack() as stack:
        for name, m in _weighted_modules(root):
            stack.callback(m.register_forward_pre_hook(make(name)).remove)
        with torch.no_grad():
            call_model(gen, z)
    return seen


_CONV_TRANSPOSE = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def _factorisable(module: nn.Module, dim: int) -> bool:
    """Whether :func:`_weight_matrix` reads a map of z from this module's weight."""
    w = getattr(module, "weight", None)
    if not isinstance(w, Tensor):
        return False
    if isinstance(module, _CONV_TRANSPOSE):
        return module.groups == 1 and w.shape[0] == dim
    return w.dim() == 2 and w.shape[1] == dim


def _z_layers(ran: Mapping[str, bool], root: nn.Module, dim: int) -> list[str]:
    modules = dict(root.named_modules())
    return [name for name, takes in ran.items() if takes and _factorisable(modules[name], dim)]


def latent_layers(model: nn.Module, *, latent_dim: int | None = None) -> list[str]:
    """Dotted names of the layers whose input is the latent code z itself (up to a positive
    rescaling per code, as a PixelNorm makes) and whose weight maps it linearly (a Linear, a
    transposed convolution, or another 2-D weight ``(M, Z)``), in the order they run on a probe
    batch: where :class:`SeFa` can factorise a weight."""
    gen, root = _as_generator(model, latent_dim)
    with model_guard(root, method="latent_layers"):
        ran = _inputs_of(gen, root)
    return _z_layers(ran, root, gen.latent_dim)


def _weight_matrix(name: str, module: nn.Module, dim: int) -> np.ndarray:
    """The matrix ``A (M, Z)`` with which ``module`` maps z: a Linear's ``(out, Z)`` weight, a
    transposed convolution's ``(Z, C, *k)`` weight as ``(C * prod(k), Z)`` (every kernel tap
    one output row), or any other 2-D weight ``(M, Z)``."""
    w = getattr(module, "weight", None)
    if not isinstance(w, Tensor):
        raise LayerError(f"layer {name!r} ({type(module).__name__}) has no weight tensor for SeFa to factorise")
    w64 = w.detach().cpu().double()
    if isinstance(module, _CONV_TRANSPOSE):
        if module.groups != 1:
            raise LayerError(f"layer {name!r} is a grouped transposed convolution; SeFa needs groups=1")
        if w64.shape[0] != dim:
            raise LayerError(f"layer {name!r} takes {w64.shape[0]} input channels, not the {dim} latent dimensions")
        return w64.reshape(dim, -1).T.numpy()
    if w64.dim() == 2 and w64.shape[1] == dim:
        return w64.numpy()
    raise LayerError(
        f"layer {name!r} ({type(module).__name__}, weight {tuple(w.shape)}) does not map the {dim} latent "
        f"dimensions linearly as a Linear (out, {dim}) or a transposed convolution ({dim}, C, k, k) does; "
        f"name the Linear or ConvTranspose layer that takes z"
    )


def _fix_signs(rows: np.ndarray) -> np.ndarray:
    """Each row's sign chosen so that its largest-magnitude entry is positive."""
    signs = np.sign(rows[np.arange(rows.shape[0]), np.abs(rows).argmax(axis=1)])
    signs[signs == 0] = 1.0
    return signs


class _Components(Direction):
    """Shared by the directions that come as a set: rows ``(K, Z)`` in z (:meth:`_rows`), one
    :class:`Direction` each."""

    name: str | None

    def _rows(self) -> Tensor:
        raise NotImplementedError

    def direction(self, i: int) -> Direction:
        """Component ``i`` (0-based) as a fitted :class:`Direction` named ``"{name}{i+1}"``."""
        self.check_fitted()
        rows = self._rows()
        k = int(rows.shape[0])
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not -k <= int(i) < k:
            raise ConfigError(f"component {i!r} does not exist; {k} were fitted (0 to {k - 1})")
        return Direction.from_vector(rows[int(i)], name=f"{self.name}{int(i) % k + 1}")

    def directions(self) -> list[Direction]:
        """Every component as a fitted :class:`Direction`, strongest first."""
        self.check_fitted()
        return [self.direction(i) for i in range(int(self._rows().shape[0]))]


# ------------------------------------------------------------------------------- SeFa
class SeFa(_Components):
    """Closed-form latent directions from the weight of the layer(s) that take z
    (Shen & Zhou 2021).

    The layer computes ``A z + b``; moving z by ``n`` (unit norm) changes its output by
    ``A n``, and the directions it changes most are the eigenvectors of ``A^T A`` with the
    largest eigenvalues. No codes are sampled: only a probe batch of three codes runs, to
    find (or check) the layer that takes z.

    Parameters
    ----------
    generator:
        A generator ``z (N, Z) -> outputs`` (``latent_dim`` attribute or ``latent_dim=``),
        a :class:`~seethrough.generative.protocol.Generator`, or an autoencoder (its decoder).
    layer:
        The layer to factorise (dotted name or module), or several (their ``A`` stacked, as the
        paper's layer-wise variant for generators with per-layer latent inputs); default the
        first layer that takes z (:func:`latent_layers`). Every layer must take z itself.
    k:
        Number of directions; at most Z are returned (a latent space of Z dimensions has Z).
    normalize:
        Scale each row of ``A`` (one output unit's weights over z) to unit norm first, as the
        authors' release does, so that units with large weights do not dominate.
    latent_dim:
        The latent size when the generator has no ``latent_dim`` attribute.
    name:
        Prefix of the directions' names (``"SeFa1"``, ...).

    Fitted attributes: ``components_`` (K, Z) (unit rows, each sign fixed so that its
    largest-magnitude entry is positive), ``eigenvalues_`` (K,) descending (of ``A^T A``),
    ``eigenvalue_ratio_`` (K,) (share of the trace), ``matrix_`` (M, Z) (``A`` as factorised),
    ``layers_`` (the dotted names), ``vector_`` (the first component).
    """

    def __init__(
        self,
        generator: nn.Module,
        *,
        layer: LayerRef | Sequence[LayerRef] | None = None,
        k: int = 5,
        normalize: bool = False,
        latent_dim: int | None = None,
        name: str = "SeFa",
    ) -> None:
        self.generator, self.layer, self.k, self.normalize = generator, layer, k, normalize
        self.latent_dim, self.name = latent_dim, name

    def _rows(self) -> Tensor:
        self.check_fitted()
        return self.components_

    def fit(self, *args: Any, **kwargs: Any) -> SeFa:
        gen, root = _as_generator(self.generator, self.latent_dim)
        dim = gen.latent_dim
        k = min(_check_int(self.k, "k"), dim)
        refs: list[LayerRef] = []
        if self.layer is not None:
            refs = [self.layer] if isinstance(self.layer, (str, nn.Module)) else list(self.layer)
            if not refs:
                raise ConfigError("layer is an empty sequence; name at least one layer, or None for the first z layer")
        named = [_resolve(root, r) for r in refs]
        with model_guard(root, method="SeFa"):
            ran = _inputs_of(gen, root)
        takes = _z_layers(ran, root, dim)
        if not named:
            if not takes:
                raise LayerError(
                    f"no Linear or transposed-convolution layer of {type(root).__name__} takes the latent codes z "
                    f"themselves as its input, so SeFa has no weight to factorise; wrap the part of the generator "
                    f"that starts at z (e.g. the synthesis network of a style-based one) as the generator"
                )
            modules = dict(root.named_modules())
            named = [(takes[0], modules[takes[0]])]
        for name, _ in named:
            if name not in ran:
                raise LayerError(
                    f"layer {name!r} did not run on the latent codes (or has no weight), so it cannot be factorised; "
                    f"the layers that take z are {takes or 'none'}"
                )
            if not ran[name]:
                raise LayerError(
                    f"layer {name!r} does not take the latent codes z as its input, so its weight says nothing about "
                    f"directions in z; SeFa needs a layer applied to z: {takes or 'none found'}"
                )
        a = np.concatenate([_weight_matrix(n, m, dim) for n, m in named], axis=0)
        if self.normalize:
            norms = np.linalg.norm(a, axis=1, keepdims=True)
            a = a / np.where(norms > 0, norms, 1.0)
        if not np.isfinite(a).all():
            raise InputError("the layer's weight contains NaN or infinite values")
        values, vectors = np.linalg.eigh(a.T @ a)  # ascending, orthonormal columns
        order = np.argsort(values)[::-1]
        values, vectors = np.clip(values[order], 0.0, None), vectors[:, order].T  # rows
        vectors = vectors * _fix_signs(vectors)[:, None]
        total = float(values.sum())
        self.components_ = torch.from_numpy(vectors[:k].astype(np.float32))
        self.eigenvalues_ = torch.from_numpy(values[:k].copy())
        self.eigenvalue_ratio_ = torch.from_numpy(values[:k] / total if total > 0 else values[:k].copy())
        self.matrix_ = torch.from_numpy(a.astype(np.float32))
        self.layers_ = tuple(n for n, _ in named)
        self.vector_ = self.components_[0].clone()
        return self


# ---------------------------------------------------------------------------- GANSpace
class GANSpace(_Components):
    """Principal components of one layer's activations, carried back to z (Härkönen et al.
    2020).

    Codes ``z ~ N(0, I)`` are sampled (seeded) and the layer's activations ``y`` (flattened, D
    per sample) streamed in chunks; only sums are kept, never the activations. The PCA basis
    ``V`` is the leading eigenvectors of their covariance; the paper's regression of the codes on
    the PCA coordinates ``x = V^T (y - mean)`` (``U = argmin sum ||U x - z||^2``, no intercept) is
    solved from the same sums, exactly as ``lstsq(X, Z)`` on the collected activations would;
    direction ``k`` in z is ``U``'s column ``k``, normalised.

    Two solvers:

    * ``"covariance"``: one pass accumulating the ``D x D`` covariance (float64) and its full
      eigen-decomposition: exact, ``8 D^2`` bytes and ``O(N D^2 + D^3)`` time, for
      ``D <= max_features``.
    * ``"randomized"``: a streamed randomised subspace iteration (Halko et al. 2011): each of
      ``n_iter + 1`` passes over the same codes multiplies the covariance by a ``D x (K + 10)``
      basis without forming it, then a Rayleigh-Ritz step; ``O(D K)`` memory, for wide layers
      (a DCGAN's first feature map). Approximate; ``residual_`` says how close.

    ``"auto"`` takes the covariance when ``D <= max_features``, else the randomised solver.

    Parameters
    ----------
    generator:
        As for :class:`SeFa`.
    layer:
        The layer whose activations are decomposed (dotted name or module).
    n_components:
        Number of components K.
    n_samples:
        Codes sampled (more than K).
    seed:
        Seed of the codes (and of the randomised solver's starting basis).
    batching:
        Rows per forward chunk (a :class:`~seethrough._core.batching.Batching`, an int or None).
    solver, max_features, n_iter:
        See above.
    latent_dim, name:
        As for :class:`SeFa` (names ``"PC1"``, ...).

    Fitted attributes: ``components_`` (K, D) the PCs in activation space (equal to
    scikit-learn's ``PCA`` up to sign; each sign fixed so that its largest-magnitude entry is
    positive, the z direction following it); ``z_components_`` (K, Z) the directions in z (unit
    rows: :meth:`direction`, :meth:`directions`); ``explained_variance_`` (K,), ``explained_variance_ratio_`` (K,),
    ``mean_`` (D,), ``regression_`` (K, Z) the unnormalised regression coefficients (z moved per
    unit of PCA coordinate), ``residual_`` (the largest ``|C v - lambda v| / lambda`` over the
    components), ``solver_``, ``layer_``, ``n_features_``, ``vector_`` (the first z direction).
    """

    def __init__(
        self,
        generator: nn.Module,
        *,
        layer: LayerRef,
        n_components: int = 10,
        n_samples: int = 10_000,
        seed: int = 0,
        batching: Batching | int | None = None,
        solver: str = "auto",
        max_features: int = 4096,
        n_iter: int = 7,
        latent_dim: int | None = None,
        name: str = "PC",
    ) -> None:
        self.generator, self.layer, self.n_components, self.n_samples = generator, layer, n_components, n_samples
        self.seed, self.batching = seed, batching
        self.solver, self.max_features, self.n_iter = solver, max_features, n_iter
        self.latent_dim, self.name = latent_dim, name

    def _rows(self) -> Tensor:
        self.check_fitted()
        return self.z_components_

    def fit(self, *args: Any, progress: bool = False, **kwargs: Any) -> GANSpace:
        if self.solver not in _SOLVERS:
            raise ConfigError(f"solver must be one of {_SOLVERS}, got {self.solver!r}")
        gen, root = _as_generator(self.generator, self.latent_dim)
        k = _check_int(self.n_components, "n_components")
        n = _check_int(self.n_samples, "n_samples", 2)
        if n <= k:
            raise ConfigError(f"n_samples={n} codes cannot give {k} components; sample more than n_components")
        max_features = _check_int(self.max_features, "max_features")
        n_iter = _check_int(self.n_iter, "n_iter", 0)
        seed = check_seed(self.seed)
        name, module = _resolve(root, self.layer)
        dev = model_device(gen) or torch.device("cpu")
        z = torch.randn(n, gen.latent_dim, generator=generator(seed)).to(dev)
        stream = _LayerStream(gen, name, module, z, as_batching(self.batching))
        with model_guard(root, method="GANSpace"):
            d = stream.width()
            if k > d:
                raise ConfigError(f"n_components={k} but layer {name!r} has only {d} features")
            solver = self.solver if self.solver != "auto" else ("covariance" if d <= max_features else "randomized")
            if solver == "covariance" and d > max_features:
                raise ConfigError(
                    f"layer {name!r} has {d} features per sample; the covariance solver keeps a {d} x {d} matrix "
                    f"({8 * d * d / 2**30:.2f} GiB) and decomposes it in O(D^3): use solver='randomized' (or 'auto'), "
                    f"pick an earlier or narrower layer, or raise max_features={max_features} if memory and time allow"
                )
            passes = 1 if solver == "covariance" else n_iter + 1
            bar = tqdm(total=n * passes, desc=f"GANSpace ({solver})", disable=not progress, file=sys.stderr)
            try:
                if solver == "covariance":
                    first = stream.moments(bar, basis=None)
                    scatter = first.scatter()
                    values, vectors = _top_eigen(scatter, k)
                    scatter_v = scatter @ vectors
                else:
                    width = min(d, k + _OVERSAMPLE)
                    rng = generator(seed, 1, device=dev)
                    q = torch.linalg.qr(torch.randn(d, width, dtype=torch.float64, generator=rng, device=dev))[0]
                    for i in range(passes):
                        sums = stream.moments(bar, basis=q, full=i == 0)
                        if i == 0:
                            first = sums  # the mean, cross moments and trace come from the first pass
                        w = sums.scatter_times(q)
                        if i < passes - 1:
                            q = torch.linalg.qr(w)[0]
                    t = q.T @ w
                    small, u = torch.linalg.eigh((t + t.T) / 2)
                    order = torch.argsort(small, descending=True)[:k]
                    values, vectors = small[order], q @ u[:, order]
                    scatter_v = w @ u[:, order]
            finally:
                bar.close()
        self._finish(first, values, vectors, scatter_v, n, name, solver)
        return self

    def _finish(
        self, sums: _Moments, values: Tensor, vectors: Tensor, scatter_v: Tensor, n: int, name: str, solver: str
    ) -> None:
        top = values.clamp(min=0.0)
        if not float(top[-1]) > 1e-12 * max(float(top[0]), 1e-300):
            rank = int((top > 1e-12 * max(float(top[0]), 1e-300)).sum())
            raise ConfigError(
                f"layer {name!r}'s activations vary along only {rank} directions over {n} codes; "
                f"ask for n_components <= {rank}"
            )
        v = vectors.T.cpu().numpy()  # (K, D)
        signs = _fix_signs(v)
        v = v * signs[:, None]
        lam = top.cpu().numpy()
        residual = (scatter_v.cpu().numpy().T * signs[:, None] - v * lam[:, None]) / lam[:, None]
        # regression of z on the PCA coordinates: X^T X = V^T S V = diag(lambda), X^T Z = V^T cross
        u = (v @ sums.cross().cpu().numpy()) / lam[:, None]  # (K, Z)
        norms = np.linalg.norm(u, axis=1)
        if not bool((norms > 0).all()):
            bad = [int(i) + 1 for i in np.flatnonzero(~(norms > 0))]
            raise ConfigError(f"components {bad} of layer {name!r} do not depend on z linearly; no direction in z")
        total = float(sums.total_scatter())
        self.components_ = torch.from_numpy(v.astype(np.float32))
        self.explained_variance_ = torch.from_numpy(lam / (n - 1))
        self.explained_variance_ratio_ = torch.from_numpy(lam / total if total > 0 else lam / (n - 1))
        self.mean_ = sums.mean().float().cpu()
        self.regression_ = torch.from_numpy(u.astype(np.float32))
        self.z_components_ = torch.from_numpy((u / norms[:, None]).astype(np.float32))
        self.residual_ = float(np.linalg.norm(residual, axis=1).max())
        self.solver_ = solver
        self.layer_ = name
        self.n_features_ = int(v.shape[1])
        self.vector_ = self.z_components_[0].clone()


_SOLVERS = ("auto", "covariance", "randomized")
#: Extra columns of the randomised solver's basis beyond K (as scikit-learn's default).
_OVERSAMPLE = 10


def _top_eigen(scatter: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The ``k`` largest eigenvalues (descending) and eigenvectors (columns) of a symmetric matrix."""
    values, vectors = torch.linalg.eigh((scatter + scatter.T) / 2)
    order = torch.argsort(values, descending=True)[:k]
    return values[order], vectors[:, order]


class _Moments:
    """Sums over one pass of activations ``y`` (shifted by ``shift``, the first chunk's mean,
    for accuracy) and codes ``z``: ``n``, ``sum y``, either ``sum y y^T`` (no basis) or
    ``sum y (y^T Q)`` for a basis ``Q (D, r)``, and with ``full`` also ``sum z``, ``sum y z^T``
    and ``sum |y|^2`` (the same on every pass over the same codes: taken once)."""

    def __init__(self, shift: Tensor, dim: int, basis: Tensor | None, full: bool = True) -> None:
        d, f64, dev = int(shift.shape[0]), torch.float64, shift.device
        self.shift, self.basis, self.full, self.n = shift, basis, full, 0
        self.sy = torch.zeros(d, dtype=f64, device=dev)
        self.sz = torch.zeros(dim, dtype=f64, device=dev)
        self.syz = torch.zeros(d, dim, dtype=f64, device=dev)
        self.sq = torch.zeros((), dtype=f64, device=dev)
        self.prod = torch.zeros(d, d if basis is None else int(basis.shape[1]), dtype=f64, device=dev)

    def add(self, y: Tensor, z: Tensor) -> None:
        """Add a chunk; ``y`` is a float64 copy of the activations, shifted in place."""
        yc = y.sub_(self.shift)
        self.n += int(y.shape[0])
        self.sy += yc.sum(dim=0)
        if self.full:
            self.sz += z.sum(dim=0)
            self.syz += yc.T @ z
            self.sq += yc.pow(2).sum()
        self.prod += yc.T @ yc if self.basis is None else yc.T @ (yc @ self.basis)

    def _delta(self) -> Tensor:
        return self.sy / self.n  # mean - shift

    def mean(self) -> Tensor:
        return self.shift + self._delta()

    def scatter(self) -> Tensor:
        """``sum (y - mean)(y - mean)^T``."""
        d = self._delta()
        return self.prod - self.n * torch.outer(d, d)

    def scatter_times(self, q: Tensor) -> Tensor:
        """``sum (y - mean)(y - mean)^T q`` (``q`` the pass's basis)."""
        d = self._delta()
        return self.prod - self.n * torch.outer(d, d @ q)

    def cross(self) -> Tensor:
        """``sum (y - mean) z^T``."""
        return self.syz - torch.outer(self._delta(), self.sz)

    def total_scatter(self) -> Tensor:
        """``sum |y - mean|^2``: the trace of the scatter."""
        d = self._delta()
        return self.sq - self.n * (d @ d)


class _LayerStream:
    """Passes over one layer's flattened activations on fixed codes (inside ``model_guard``)."""

    def __init__(self, gen: Generator, name: str, module: nn.Module, z: Tensor, batching: Batching) -> None:
        self.gen, self.name, self.module, self.z, self.batching = gen, name, module, z, batching
        self.shift: Tensor | None = None

    def _chunks(self) -> Any:
        def flat(_name: str, _module: nn.Module, out: Tensor) -> Tensor:
            return out.detach().reshape(out.shape[0], -1).to(torch.float64, copy=True)  # a copy: shifted in place

        for rows, store in stream_activations(
            self.gen, {self.name: self.module}, self.z, batching=self.batching, transform=flat, clone=False
        ):
            y, zc = store[self.name], self.z[rows].double()
            if y.shape[0] != zc.shape[0]:
                raise LayerError(
                    f"layer {self.name!r} returns {y.shape[0]} rows for {zc.shape[0]} codes; pick a layer whose output "
                    f"has the batch dimension first"
                )
            yield y, zc

    def width(self) -> int:
        """D, from the activations of the first code (and the shift: the first chunk's mean)."""
        with torch.no_grad():
            store, _ = run_capture(self.gen, self.z[:1], {self.name: self.module}, what="decomposed")
        out = store[self.name]
        if not isinstance(out, Tensor) or out.dim() < 1:
            raise LayerError(f"layer {self.name!r} does not return a tensor; pick another layer")
        return int(out[0].numel())

    def moments(self, bar: Any, basis: Tensor | None, full: bool = True) -> _Moments:
        sums: _Moments | None = None
        for y, zc in self._chunks():
            if self.shift is None:
                self.shift = y.mean(dim=0)
                if not bool(torch.isfinite(self.shift).all()):
                    raise InputError(f"layer {self.name!r} produced NaN or infinite activations on sampled codes")
            if sums is None:
                sums = _Moments(self.shift, int(zc.shape[1]), basis, full)
            sums.add(y, zc)
            bar.update(int(zc.shape[0]))
        assert sums is not None
        if not (bool(torch.isfinite(sums.sy).all()) and bool(torch.isfinite(sums.prod).all())):  # NaN propagates
            raise InputError(f"layer {self.name!r} produced NaN or infinite activations on sampled codes")
        return sums


# ------------------------------------------------------------------- supervised (InterFaceGAN)
def _values(out: Any, n: int) -> np.ndarray:
    if isinstance(out, Tensor):
        out = out.detach().cpu()
        out = out.double() if out.dtype != torch.bool else out
        out = out.numpy()
    a = np.asarray(out)
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if a.shape != (n,):
        raise InputError(
            f"the attribute returned shape {a.shape} for {n} outputs; it must return one value per output, (N,) "
            f"(a bool / 0-1 label or a score)"
        )
    if a.dtype != bool and not np.isfinite(a.astype(np.float64)).all():
        raise InputError("the attribute returned NaN or infinite values")
    return a


def _guarded(fn: Any) -> contextlib.AbstractContextManager[Any]:
    return model_guard(fn, method="attribute") if isinstance(fn, nn.Module) else contextlib.nullcontext()


class SupervisedDirection(Direction):
    """The normal of a linear boundary in z for an attribute of the generated outputs
    (InterFaceGAN, Shen et al. 2020).

    ``n_samples`` codes ``z ~ N(0, I)`` are drawn (seeded) and generated in chunks, and
    ``attribute(outputs) -> (N,)`` labels each output: a bool or 0/1 label, or a score. The
    boundary is fitted on the codes with :class:`~seethrough.generative.directions.ProbeDirection`
    (logistic by default, pointing to the positive label or to higher scores). Scores are
    turned into labels as the paper does with its attribute predictor's scores: the top and
    bottom ``extremes`` fraction of samples become the positives and the negatives (the rest is
    left out); ``extremes=None`` splits the scores at their median. ``kind="linear"`` regresses
    the score instead.

    Conditional manipulation: ``a.project_out(b)`` changes attribute ``a`` while keeping ``b``'s
    linear score fixed.

    Fitted attributes: ``vector_``, ``probe_`` (the fitted latent probe), ``z_`` (n, Z) the
    codes, ``values_`` (n,) what the attribute returned, ``used_`` (n,) bool, the codes the
    probe was fitted on, ``labels_`` their labels (or scores), ``train_score_`` (accuracy for a
    logistic boundary, R^2 for a linear one).
    """

    def __init__(
        self,
        generator: nn.Module,
        attribute: Callable[[Tensor], Any],
        *,
        n_samples: int = 2000,
        seed: int = 0,
        kind: str = "logistic",
        extremes: float | None = None,
        C: float = 1.0,
        alpha: float = 1.0,
        batching: Batching | int | None = None,
        latent_dim: int | None = None,
        name: str | None = None,
    ) -> None:
        self.generator, self.attribute, self.n_samples, self.seed = generator, attribute, n_samples, seed
        self.kind, self.extremes, self.C, self.alpha = kind, extremes, C, alpha
        self.batching, self.latent_dim, self.name = batching, latent_dim, name

    def fit(self, *args: Any, progress: bool = False, **kwargs: Any) -> SupervisedDirection:
        if not callable(self.attribute):
            raise ConfigError("attribute must be a callable outputs -> (N,) labels or scores")
        if self.kind not in ("logistic", "linear"):
            raise ConfigError(f"kind must be 'logistic' or 'linear', got {self.kind!r}")
        if self.extremes is not None:
            if self.kind == "linear":
                raise ConfigError(
                    "extremes selects labelled samples for a logistic boundary; drop it for kind='linear'"
                )
            e = float(self.extremes)
            if not 0.0 < e <= 0.5:
                raise ConfigError(f"extremes must be a fraction in (0, 0.5], got {self.extremes!r}")
        gen, root = _as_generator(self.generator, self.latent_dim)
        n = _check_int(self.n_samples, "n_samples", 4)
        seed = check_seed(self.seed)
        dev = model_device(gen) or torch.device("cpu")
        z = torch.randn(n, gen.latent_dim, generator=generator(seed)).to(dev)
        parts: list[np.ndarray] = []
        b = as_batching(self.batching)
        with model_guard(root, method="SupervisedDirection"), _guarded(self.attribute), torch.no_grad():
            size = forward_chunk_rows(gen, z[:1], b)
            chunks = list(Batching.chunks(n, size))
            for sl in tqdm(chunks, desc="label samples", disable=not progress, file=sys.stderr):
                out = call_model(gen, z[sl])
                parts.append(_values(self.attribute(out), sl.stop - sl.start))
        values = np.concatenate(parts)
        used = np.ones(n, dtype=bool)
        binary = values.dtype == bool or set(np.unique(values).tolist()) <= {0, 1}
        labels: np.ndarray
        if self.kind == "linear":
            labels = values.astype(np.float64)
            if not labels.std() > 0:
                raise ConfigError(f"the attribute is {labels[0]} for every sample; there is nothing to regress")
        elif binary:
            if self.extremes is not None:
                raise ConfigError("the attribute returns labels, not scores; extremes applies to scores only")
            labels = values.astype(bool)
        else:
            scores = values.astype(np.float64)
            if self.extremes is None:
                labels = scores > np.median(scores)
            else:
                m = max(1, int(round(float(self.extremes) * n)))
                order = np.argsort(scores, kind="stable")
                used[:] = False
                used[order[:m]] = True
                used[order[n - m :]] = True
                labels = np.zeros(n, dtype=bool)
                labels[order[n - m :]] = True
                labels = labels[used]
        if self.kind == "logistic" and np.unique(labels).size < 2:
            raise ConfigError(
                f"every sampled output got the same label ({bool(labels[0])}); the attribute does not vary over "
                f"{n} samples: sample more (n_samples) or check the attribute"
            )
        codes = z.cpu()
        probe = ProbeDirection(self.kind, C=self.C, alpha=self.alpha, name=self.name).fit(
            codes[torch.from_numpy(used)], labels
        )
        self.probe_ = probe.probe_
        self.vector_ = probe.vector_
        self.z_ = codes
        self.values_ = torch.from_numpy(values.astype(np.float64) if values.dtype != bool else values)
        self.used_ = torch.from_numpy(used)
        self.labels_ = torch.from_numpy(np.asarray(labels, dtype=np.float64 if self.kind == "linear" else bool))
        self.train_score_ = float(getattr(self.probe_, "train_accuracy_" if self.kind == "logistic" else "train_r2_"))
        return self


# --------------------------------------------------------------------- layer-restricted edits
def _n_layers(n_latent_layers: int | nn.Module) -> int:
    if isinstance(n_latent_layers, nn.Module):
        layers = getattr(n_latent_layers, "n_latent_layers", None)
        if layers is None and isinstance(n_latent_layers, Generator):
            layers = n_latent_layers.n_latent_layers
        if isinstance(layers, bool) or not isinstance(layers, int) or layers < 1:
            raise ConfigError(
                f"{type(n_latent_layers).__name__} has no per-layer latent inputs (no integer n_latent_layers "
                f"attribute): layer-restricted edits need a generator that takes codes (N, L, Z), one per latent "
                f"input; edit every layer at once with direction.apply(z, strength) instead"
            )
        return int(layers)
    return _check_int(n_latent_layers, "n_latent_layers")


def _layer_range(layers: int | Sequence[int], n_layers: int) -> tuple[int, int]:
    if isinstance(layers, (int, np.integer)) and not isinstance(layers, bool):
        start = stop = int(layers)
    else:
        items = list(layers) if isinstance(layers, Sequence) and not isinstance(layers, str) else None
        if (
            items is None
            or len(items) != 2
            or any(isinstance(i, bool) or not isinstance(i, (int, np.integer)) for i in items)
        ):
            raise ConfigError(
                f"layers must be one latent input index or an inclusive range (start, stop), got {layers!r}"
            )
        start, stop = int(items[0]), int(items[1])
    if not 0 <= start <= stop < n_layers:
        raise ConfigError(
            f"layers {layers!r} is outside the {n_layers} latent inputs; give indices with 0 <= start <= stop <= "
            f"{n_layers - 1}"
        )
    return start, stop


def layer_edit(
    z: Any,
    direction: Direction | Tensor | int,
    strength: float | Tensor = 1.0,
    *,
    layers: int | Sequence[int],
    n_latent_layers: int | nn.Module,
) -> Tensor:
    """Per-layer codes ``(N, L, Z)`` with ``direction`` applied only to latent inputs
    ``layers`` (GANSpace's layer-restricted edits).

    ``z``: codes ``(N, Z)`` (every latent input gets the same code, as a plain forward does) or
    per-layer codes ``(N, L, Z)``. ``strength``: a number or one per code ``(N,)``. ``layers``:
    one latent input index or an inclusive range ``(start, stop)``, 0-based. ``n_latent_layers``:
    ``L``, or the generator (its ``n_latent_layers``; a clear error when it has none)."""
    n_layers = _n_layers(n_latent_layers)
    if isinstance(z, np.ndarray):
        z = torch.from_numpy(z)
    if not isinstance(z, Tensor):
        raise InputError(f"z must be a tensor of codes (N, Z) or (N, L, Z), got {type(z).__name__}")
    if not z.dtype.is_floating_point:
        z = z.float()
    if z.dim() == 1:
        z = z[None]
    if z.dim() == 2:
        codes = z.detach()[:, None, :].expand(-1, n_layers, -1).clone()
    elif z.dim() == 3:
        if z.shape[1] != n_layers:
            raise InputError(f"per-layer codes have {z.shape[1]} layers but the generator has {n_layers} latent inputs")
        codes = z.detach().clone()
    else:
        raise InputError(f"z must be codes (N, Z) or per-layer codes (N, L, Z), got shape {tuple(z.shape)}")
    d = as_direction(direction, int(codes.shape[2]))
    start, stop = _layer_range(layers, n_layers)
    part = codes[:, start : stop + 1]
    moved = d.apply(part.reshape(-1, part.shape[2]), _repeat(strength, codes.shape[0], stop - start + 1, codes))
    codes[:, start : stop + 1] = moved.reshape(part.shape)
    return codes


def _repeat(strength: float | Tensor, n: int, per: int, like: Tensor) -> float | Tensor:
    s = torch.as_tensor(strength, dtype=like.dtype, device=like.device)
    if s.dim() == 0:
        return float(s)
    if s.dim() != 1 or s.shape[0] != n:
        raise InputError(f"strength must be a number or one value per code ({n}), got shape {tuple(s.shape)}")
    return s.repeat_interleave(per)


def _decode(gen: Generator, root: nn.Module, z: Tensor, batching: Batching | int | None, method: str) -> Tensor:
    outs: list[Tensor] = []
    b = as_batching(batching)
    with model_guard(root, method=method), torch.no_grad():
        size = forward_chunk_rows(gen, z[:1], b)
        for sl in Batching.chunks(z.shape[0], size):
            outs.append(call_model(gen, z[sl]).detach().cpu())
    return outs[0] if len(outs) == 1 else torch.cat(outs)


def layer_traverse(
    generator: nn.Module,
    z0: Any,
    direction: Direction | Tensor | int,
    *,
    layers: int | Sequence[int],
    strengths: Sequence[float] | Tensor = (-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0),
    batching: Batching | int | None = None,
    describe: Callable[[Tensor, Tensor], Mapping[str, Any]] | None = None,
    latent_dim: int | None = None,
) -> LatentWalk:
    """A traversal of one code along ``direction`` applied only to latent inputs ``layers``
    (:func:`layer_edit`), decoded (guarded, batched) into a
    :class:`~seethrough.generative.latent.LatentWalk` whose ``z`` are the per-layer codes
    ``(S, L, Z)``. ``z0``: one code ``(Z,)``, ``(1, Z)`` or ``(1, L, Z)``; ``describe(outputs, z)``
    adds table columns as for ``Latent.traverse``."""
    gen, root = _as_generator(generator, latent_dim)
    n_layers = _n_layers(gen)
    z = torch.as_tensor(z0.detach() if isinstance(z0, Tensor) else np.asarray(z0, dtype=np.float32))
    if z.dim() == 1:
        z = z[None]
    if z.dim() not in (2, 3) or z.shape[0] != 1:
        raise InputError(f"z0 must be one code, (Z,), (1, Z) or (1, L, Z), got shape {tuple(z.shape)}")
    if z.shape[-1] != gen.latent_dim:
        raise InputError(f"z0 has {z.shape[-1]} dimensions but the generator's latent space has {gen.latent_dim}")
    s = torch.as_tensor(np.asarray(strengths, dtype=np.float64)).reshape(-1)
    if s.numel() == 0 or not bool(torch.isfinite(s).all()):
        raise ConfigError("strengths must be a non-empty sequence of finite numbers")
    base = z.float().expand(s.numel(), *z.shape[1:])
    codes = layer_edit(base, direction, s.float(), layers=layers, n_latent_layers=n_layers)
    dev = model_device(gen) or torch.device("cpu")
    outputs = _decode(gen, root, codes.to(dev), batching, "layer_traverse")
    d = as_direction(direction, gen.latent_dim)
    start, stop = _layer_range(layers, n_layers)
    cols: dict[str, Any] = {"strength": s}
    if describe is not None:
        extra = describe(outputs, codes)
        if not isinstance(extra, Mapping):
            raise InputError(f"describe must return a mapping of column name -> values, got {type(extra).__name__}")
        if "strength" in extra:
            raise InputError("describe returned a 'strength' column, which the walk already has; rename it")
        cols.update(extra)
    label = f"{d.label} @ layers {start}-{stop}" if stop > start else f"{d.label} @ layer {start}"
    return LatentWalk(
        z=codes.cpu(),
        outputs=outputs,
        table=AttributeTable(cols),
        method="traverse",
        strengths=s.float(),
        direction=label,
        settings={"direction": d.label, "layers": [start, stop], "n_latent_layers": n_layers},
    )
