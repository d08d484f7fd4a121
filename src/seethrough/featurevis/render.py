"""Rendering: optimise images so that they maximise objectives.

Every step: the parameterization makes displayable images ``u`` in [0, 1]; the
transforms move them randomly; the input map puts them in the model's input space; the
model runs (only up to the deepest layer the objectives need, unless one needs the
output); each image's objective is scored and Adam takes a step on ``-sum(scores)``.
The first ``redirect_relu_steps`` steps use redirected ReLU gradients (see ``_relu``).

:func:`render` runs one batch (K images, one objective each or one objective for all);
:func:`visualize_channels` renders every (or the chosen) channel of a layer, one image
each, in chunks sized by the package's :class:`~seethrough._core.batching.Batching`.
An image depends only on the seed and its row (channel) index, not on the chunk it was
rendered in.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .._core.batching import Batching, as_batching, saved_bytes
from .._core.call import ForwardFailed
from .._core.capture import run_capture
from .._core.errors import ConfigError, InputError, LayerError, TargetError
from .._core.layers import LayerRef, resolve_layer
from .._core.result import Result
from .._core.state import model_guard
from .._core.validation import model_device
from ._relu import redirected_relu
from .objectives import ChannelObjective, Objective, _Plan, as_objectives
from .param import ImageParam, InputSpace, as_param
from .transforms import Compose, StepRandom, Transform, as_transform, standard_transforms

__all__ = ["FeatureVisualization", "FeatureVisualizer", "render", "visualize_channels"]

Progress = Callable[[str], None]

#: sizes tried when a model cannot take the requested one, to say which would work
_PROBE_SIZES = (16, 28, 32, 48, 64, 96, 128, 224)


@dataclass(frozen=True, eq=False)
class FeatureVisualization(Result):
    """The result of a render (a :class:`~seethrough._core.result.Result`: ``save``/``load``,
    ``plot(ax=...)`` and ``to_html()``, the views of :mod:`seethrough.featurevis.views`).

    Attributes
    ----------
    images:
        ``(K, C, H, W)`` displayable images in [0, 1].
    inputs:
        The same images in the model's input space (after ``input_range`` or
        ``mean``/``std``), ready to feed to the model.
    history:
        ``(steps, K)``: each image's objective at every step (on the transformed images
        the step optimised).
    scores:
        ``(K,)``: each image's objective on the final, untransformed image.
    objectives:
        A description of each image's objective.
    settings:
        Everything needed to reproduce the render (JSON-serialisable).
    layer, channels:
        For :func:`visualize_channels`: the layer's dotted name and the channel of each image.
    seconds, n_evaluations:
        Wall-clock time; images passed through the model (forward and backward).
    """

    images: Tensor
    inputs: Tensor
    history: Tensor
    scores: Tensor
    objectives: tuple[str, ...]
    settings: Mapping[str, Any] = field(default_factory=dict)
    layer: str | None = None
    channels: tuple[int, ...] | None = None
    seconds: float = 0.0
    n_evaluations: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        # sequences come back from ``load`` as lists
        object.__setattr__(self, "objectives", tuple(self.objectives))
        if self.channels is not None:
            object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))

    def __repr__(self) -> str:
        where = f", layer={self.layer!r}" if self.layer is not None else ""
        return f"FeatureVisualization(images={tuple(self.images.shape)}{where})"

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def names(self) -> list[str]:
        """File stems: ``channel_0007`` per channel, else ``image_0003``."""
        if self.channels is not None:
            return [f"channel_{c:04d}" for c in self.channels]
        return [f"image_{k:04d}" for k in range(len(self))]

    def save_pngs(self, folder: str | Path, *, scale: int = 1) -> list[Path]:
        """Write each image as ``<folder>/<name>.png`` (see :meth:`names`), upscaled by an
        integer ``scale`` with nearest neighbour; returns the paths."""
        import numpy as np
        from PIL import Image

        if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
            raise ConfigError(f"scale must be a positive int, got {scale!r}")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        arr = (self.images.detach().cpu().clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).numpy()
        for name, img in zip(self.names(), arr):
            img = np.moveaxis(img, 0, -1)
            if img.shape[-1] == 1:
                img = img[..., 0]
            elif img.shape[-1] != 3:
                img = img.mean(axis=-1).astype(np.uint8)
            if scale > 1:
                img = np.repeat(np.repeat(img, scale, axis=0), scale, axis=1)
            path = folder / f"{name}.png"
            Image.fromarray(np.ascontiguousarray(img)).save(path)
            paths.append(path)
        return paths


# ---------------------------------------------------------------------------------------
# model plumbing
# ---------------------------------------------------------------------------------------
def _forward(model: nn.Module, x: Tensor, plan: _Plan) -> tuple[dict[str, Tensor], Tensor | None]:
    """One forward pass with the plan's layers captured, with their graph (the objectives
    are differentiated); stopped at the last of them unless the output is needed. A module
    that runs more than once counts with its first output."""
    stop = not plan.needs_output and bool(plan.modules)
    return run_capture(model, x, plan.modules, stop=stop, what="visualized", detach=False, reuse="first")


def _working_sizes(model: nn.Module, channels: int, device) -> list[int]:
    ok = []
    with torch.no_grad():
        for s in _PROBE_SIZES:
            try:
                model(torch.full((1, channels, s, s), 0.5, device=device))
                ok.append(s)
            except Exception:  # any failure: the size does not work
                pass
    return ok


def _size_error(model, channels, hw, device, error, *, transformed=None) -> InputError:
    sizes = _working_sizes(model, channels, device)
    h, w = hw
    what = f"{channels}x{h}x{w} images"
    if h == w and h in sizes and (transformed is None or tuple(transformed) == (h, w)):
        # the size is fine: something else failed
        return InputError(f"the model's forward pass failed on {what} during feature visualization: {error}")
    if transformed is not None:
        what += f" (size {transformed[0]}x{transformed[1]} after the transforms)"
    if sizes:
        fix = f"Sizes that work: {', '.join(map(str, sizes))}; pass size={sizes[-1] if 64 not in sizes else 64}"
        if transformed is not None:
            fix += " and transforms that keep the size (the default standard_transforms do)"
        fix += "."
    else:
        fix = (
            f"None of the square sizes {', '.join(map(str, _PROBE_SIZES))} work with {channels} "
            f"channel(s); check image_channels and what input the model expects."
        )
    return InputError(f"the model's forward pass failed on {what}: {error}. {fix}")


def _input_shape(value: Any, what: str) -> tuple[int, int, int] | None:
    """``value`` as a ``(C, H, W)`` triple of positive ints (None stays None)."""
    if value is None:
        return None
    if (
        not isinstance(value, (tuple, list, torch.Size))
        or len(value) != 3
        or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value)
    ):
        raise ConfigError(f"{what} must be (channels, height, width), three positive ints, got {value!r}")
    return (int(value[0]), int(value[1]), int(value[2]))


def _model_input_shape(model: nn.Module) -> tuple[int, int, int] | None:
    """The model's own ``input_shape`` attribute, when it is a ``(C, H, W)`` triple."""
    shape = getattr(model, "input_shape", None)
    if isinstance(shape, (tuple, list, torch.Size)) and len(shape) == 3:
        try:
            return _input_shape(tuple(shape), f"{type(model).__name__}.input_shape")
        except ConfigError:
            return None
    return None


def _first_conv_channels(model: nn.Module) -> int | None:
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            return int(m.in_channels)
    return None


# ---------------------------------------------------------------------------------------
# the visualizer
# ---------------------------------------------------------------------------------------
@dataclass
class _Setup:
    channels: int
    hw: tuple[int, int]
    param: ImageParam
    transform: Transform
    space: InputSpace
    device: torch.device


@dataclass(eq=False)
class FeatureVisualizer:
    """Activation maximisation with a chosen parameterization, transforms and optimiser.

    Parameters
    ----------
    model:
        The network; used only inside :func:`~seethrough._core.state.model_guard`.
    param:
        ``"fft"`` (default), ``"pixel"`` or an :class:`~seethrough.featurevis.ImageParam`.
    transforms:
        ``"standard"`` (:func:`~seethrough.featurevis.standard_transforms` for the
        size), None (no transforms), a :class:`Transform`, a list of them, or a callable.
    steps, lr:
        Adam steps and learning rate (256, 0.05).
    size:
        Image size: an int or ``(H, W)``. None: from ``input_shape``, else the model's own
        ``input_shape`` attribute if it has one, else 64.
    seed:
        Seeds the initial parameters and the transforms.
    redirect_relu_steps:
        Steps (from the first) that use redirected ReLU gradients, so units dead on the
        starting image can still be visualized (16; 0 turns it off).
    input_range, mean, std:
        The model's input space: ``input_range=(lo, hi)`` (images map linearly from
        [0, 1] to it), or per-channel ``mean``/``std`` normalisation. Default: [0, 1].
    image_channels:
        Channels of the input image; None: from ``input_shape``, else the model's
        ``input_shape`` attribute, else the first convolution's ``in_channels``.
    input_shape:
        ``(C, H, W)`` of the model's inputs, as the caller knows it (the app passes a bundled
        model's card); ``size`` and ``image_channels``, when given, take precedence.
    """

    model: nn.Module = field(repr=False)
    _: KW_ONLY
    param: ImageParam | str = "fft"
    transforms: Any = "standard"
    steps: int = 256
    lr: float = 0.05
    size: int | tuple[int, int] | None = None
    seed: int = 0
    redirect_relu_steps: int = 16
    input_range: tuple[float, float] | None = None
    mean: Sequence[float] | float | None = None
    std: Sequence[float] | float | None = None
    image_channels: int | None = None
    input_shape: tuple[int, int, int] | None = None

    # -- public ------------------------------------------------------------------------
    def render(
        self,
        objective: Objective | Sequence[Objective],
        *,
        batch: int | None = None,
        progress: Progress | None = None,
    ) -> FeatureVisualization:
        """Optimise ``batch`` images for one objective, or one image per objective of a list."""
        start = time.perf_counter()
        objectives = as_objectives(objective, batch)
        setup = self._setup()
        plan = _Plan(self.model, objectives)
        with model_guard(self.model, method="feature visualization"):
            self._probe(plan, setup)
            rows = torch.arange(len(objectives))
            res = self._optimise(plan, rows, len(objectives), setup, progress)
        return self._result(res, [plan], setup, start, layer=None, channels=None)

    def visualize_channels(
        self,
        layer: LayerRef,
        channels: Sequence[int] | None = None,
        *,
        batching: Batching | int | None = None,
        progress: Progress | None = None,
    ) -> FeatureVisualization:
        """One image per channel of ``layer`` (all channels when ``channels`` is None):
        image ``k`` maximises the mean over positions of channel ``channels[k]`` (a
        linear layer: the unit). Rendered in chunks sized by ``batching`` (an explicit
        batch size, or automatic from the memory one image's step keeps alive)."""
        start = time.perf_counter()
        batching = as_batching(batching)
        setup = self._setup()
        name, _module = resolve_layer(self.model, layer)
        with model_guard(self.model, method="feature visualization"):
            probe_plan = _Plan(self.model, [ChannelObjective(name, 0)])
            shapes, _ = self._probe(probe_plan, setup, check=False)
            shape = shapes[name]
            if len(shape) < 1:
                raise LayerError(f"layer {name!r} gives a scalar per image; it has no channels to visualize")
            n_units = int(shape[0])
            chans = _channel_list(channels, n_units, name)
            objectives = [ChannelObjective(name, c) for c in chans]
            measured = batching.batch_size is None
            if batching.batch_size is not None:
                per_chunk = batching.batch_size
            else:
                row_bytes = self._row_bytes(_Plan(self.model, objectives[:1]), torch.tensor(chans[:1]), n_units, setup)
                per_chunk = batching.rows_per_chunk(row_bytes, setup.device)
            parts, plans = [], []
            chunks = list(Batching.chunks(len(chans), per_chunk))
            for i, sl in enumerate(chunks):
                plan = _Plan(self.model, objectives[sl])
                plan.check({name: shape}, None, (setup.channels, *setup.hw))
                if progress is not None:
                    progress(
                        f"featurevis {name}: channels {chans[sl][0]}..{chans[sl][-1]} "
                        f"(chunk {i + 1}/{len(chunks)}, {sl.stop - sl.start} images)"
                    )
                parts.append(self._optimise(plan, torch.tensor(chans[sl]), n_units, setup, None))
                plans.append(plan)
        res = {
            k: torch.cat([p[k] for p in parts], dim=1 if k == "history" else 0)
            for k in ("images", "inputs", "history", "scores")
        }
        res["n_evaluations"] = sum(p["n_evaluations"] for p in parts) + int(measured)
        extra = {"batch_size": per_chunk, "chunks": len(chunks)}
        return self._result(res, plans, setup, start, layer=name, channels=tuple(chans), extra=extra)

    # -- setup and checks -------------------------------------------------------------
    def _setup(self) -> _Setup:
        model = self.model
        if not isinstance(model, nn.Module):
            raise TypeError(f"seethrough visualizes torch.nn.Module models, not {type(model).__name__}")
        _check_int(self.steps, "steps", minimum=1)
        _check_int(self.seed, "seed", minimum=None)
        _check_int(self.redirect_relu_steps, "redirect_relu_steps", minimum=0)
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or not self.lr > 0:
            raise ConfigError(f"lr must be a positive number, got {self.lr!r}")
        known = _input_shape(self.input_shape, "input_shape") or _model_input_shape(model)
        channels = self.image_channels
        if channels is None:
            channels = known[0] if known is not None else _first_conv_channels(model)
        if channels is None:
            raise ConfigError(
                f"cannot tell how many channels {type(model).__name__} takes (no convolution found); "
                f"pass input_shape=(C, H, W) or image_channels=..."
            )
        _check_int(channels, "image_channels", minimum=1)
        if self.size is None:
            hw = (known[1], known[2]) if known is not None else (64, 64)
        elif isinstance(self.size, (tuple, list)) and len(self.size) == 2:
            hw = (_check_int(self.size[0], "size", minimum=2), _check_int(self.size[1], "size", minimum=2))
        else:
            s = _check_int(self.size, "size", minimum=2)
            hw = (s, s)
        param = as_param(self.param)
        param._check(channels)
        if isinstance(self.transforms, str):
            if self.transforms != "standard":
                raise ConfigError(
                    f"transforms must be 'standard', None, a Transform or a list, got {self.transforms!r}"
                )
            transform: Transform = standard_transforms(min(hw))
        elif self.transforms is None:
            transform = Compose([])
        else:
            transform = as_transform(self.transforms)
        space = InputSpace.build(channels, self.input_range, self.mean, self.std)
        device = model_device(model) or torch.device("cpu")
        return _Setup(channels, hw, param, transform, space, device)

    def _probe(self, plan: _Plan, setup: _Setup, *, check: bool = True):
        """One no-grad forward pass of a gray image: the model takes the size, the layers
        run, and the objectives fit their layers' shapes."""
        scale, shift = setup.space.tensors(setup.device)
        x = torch.full((1, setup.channels, *setup.hw), 0.5, device=setup.device) * scale + shift
        with torch.no_grad():
            try:
                acts, out = _forward(self.model, x, plan)
            except ForwardFailed as e:
                raise _size_error(self.model, setup.channels, setup.hw, setup.device, e.__cause__ or e) from e
        shapes = {k: tuple(v.shape[1:]) for k, v in acts.items()}
        out_shape = None if out is None else tuple(out.shape[1:])
        if check:
            plan.check(shapes, out_shape, (setup.channels, *setup.hw))
        return shapes, out_shape

    def _row_bytes(self, plan: _Plan, rows: Tensor, n_total: int, setup: _Setup) -> int:
        """Bytes one image's optimisation step keeps alive (measured on one image)."""
        skip = {p.untyped_storage().data_ptr() for p in self.model.parameters()}
        skip |= {b.untyped_storage().data_ptr() for b in self.model.buffers()}
        built = setup.param.build((setup.channels, *setup.hw), rows.tolist(), seed=self.seed, device=setup.device)
        counter = saved_bytes(skip)
        with torch.enable_grad(), counter:
            loss = self._step_loss(plan, built, rows, n_total, setup, step=0)[0]
        loss.backward()
        state = sum(p.numel() * p.element_size() for p in built.params) * 4  # param, grad, Adam moments
        return max(1, counter.total + state)

    # -- optimisation -------------------------------------------------------------------
    def _step_loss(self, plan, built, rows, n_total, setup, *, step):
        u = built.image()
        rng = StepRandom(self.seed, step, rows, n_total)
        v = setup.transform(u, rng)
        scale, shift = setup.space.tensors(setup.device)
        x = v * scale + shift
        with ExitStack() as stack:
            if step < self.redirect_relu_steps:
                stack.enter_context(redirected_relu())
            try:
                acts, out = _forward(self.model, x, plan)
            except ForwardFailed as e:
                raise _size_error(
                    self.model,
                    setup.channels,
                    setup.hw,
                    setup.device,
                    e.__cause__ or e,
                    transformed=tuple(x.shape[2:]),
                ) from e
        scores = plan.evaluate(acts, out, u)
        return -scores.sum(), scores

    def _optimise(self, plan: _Plan, rows: Tensor, n_total: int, setup: _Setup, progress) -> dict:
        k = len(rows)
        built = setup.param.build((setup.channels, *setup.hw), rows.tolist(), seed=self.seed, device=setup.device)
        opt = torch.optim.Adam(built.params, lr=float(self.lr))
        history = torch.empty(self.steps, k)
        marks = {max(1, (self.steps * q) // 4) for q in (1, 2, 3)}
        if progress is not None:
            progress(f"featurevis: {k} image(s), {self.steps} steps")
        with torch.enable_grad():
            for step in range(self.steps):
                loss, scores = self._step_loss(plan, built, rows, n_total, setup, step=step)
                if not bool(torch.isfinite(loss)):
                    raise ConfigError(
                        f"the objective became non-finite at step {step}; lower lr (now {self.lr}) or add a regulariser"
                    )
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                history[step] = scores.detach().float().cpu()
                if progress is not None and step + 1 in marks:
                    progress(f"featurevis: step {step + 1}/{self.steps}")
        with torch.no_grad():
            u = built.image().detach()
            scale, shift = setup.space.tensors(setup.device)
            x = u * scale + shift
            acts, out = _forward(self.model, x, plan)
            final = plan.evaluate(acts, out, u).float().cpu()
        return {
            "images": u.cpu(),
            "inputs": x.cpu(),
            "history": history,
            "scores": final,
            "n_evaluations": k * (self.steps + 1),
        }

    def _result(self, res, plans, setup, start, *, layer, channels, extra=None) -> FeatureVisualization:
        settings = {
            "steps": self.steps,
            "lr": float(self.lr),
            "seed": self.seed,
            "size": list(setup.hw),
            "image_channels": setup.channels,
            "param": setup.param.settings(),
            "transforms": repr(setup.transform),
            "redirect_relu_steps": self.redirect_relu_steps,
            "input_space": setup.space.description,
        }
        settings.update(extra or {})
        descriptions = tuple(d for p in plans for d in p.descriptions)
        n_eval = res["n_evaluations"] + 1  # the probe
        return FeatureVisualization(
            images=res["images"],
            inputs=res["inputs"],
            history=res["history"],
            scores=res["scores"],
            objectives=descriptions,
            settings=settings,
            layer=layer,
            channels=channels,
            seconds=time.perf_counter() - start,
            n_evaluations=int(n_eval),
        )


def _check_int(v: Any, name: str, *, minimum: int | None) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ConfigError(f"{name} must be an int, got {v!r}")
    if minimum is not None and v < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {v}")
    return v


def _channel_list(channels: Any, n_units: int, layer: str) -> list[int]:
    if channels is None:
        return list(range(n_units))
    if isinstance(channels, Tensor):
        channels = channels.reshape(-1).tolist()
    if isinstance(channels, int) and not isinstance(channels, bool):
        channels = [channels]
    try:
        chans = list(channels)
    except TypeError:
        raise TargetError(f"channels must be None (all), an int or a sequence of ints, got {channels!r}") from None
    if not chans:
        raise TargetError("channels is empty; give at least one channel index, or None for all")
    out = []
    for c in chans:
        if isinstance(c, bool) or not isinstance(c, int):
            raise TargetError(f"channel indices must be ints, got {c!r}")
        if not 0 <= c < n_units:
            raise TargetError(
                f"channel {c} is out of range for layer {layer!r} with {n_units} channels (valid: 0..{n_units - 1})"
            )
        out.append(int(c))
    return out


# ---------------------------------------------------------------------------------------
# functions
# ---------------------------------------------------------------------------------------
def render(
    model: nn.Module,
    objective: Objective | Sequence[Objective],
    *,
    param: ImageParam | str = "fft",
    transforms: Any = "standard",
    steps: int = 256,
    size: int | tuple[int, int] | None = None,
    seed: int = 0,
    lr: float = 0.05,
    batch: int | None = None,
    progress: Progress | None = None,
    redirect_relu_steps: int = 16,
    input_range: tuple[float, float] | None = None,
    mean: Sequence[float] | float | None = None,
    std: Sequence[float] | float | None = None,
    image_channels: int | None = None,
    input_shape: tuple[int, int, int] | None = None,
) -> FeatureVisualization:
    """Render images that maximise ``objective`` (see :class:`FeatureVisualizer` for the
    settings). A single objective (or :class:`seethrough.Target`) is optimised on ``batch``
    images (default 1); a list gives one image per objective, all optimised together in one
    batch."""
    return FeatureVisualizer(
        model,
        param=param,
        transforms=transforms,
        steps=steps,
        lr=lr,
        size=size,
        seed=seed,
        redirect_relu_steps=redirect_relu_steps,
        input_range=input_range,
        mean=mean,
        std=std,
        image_channels=image_channels,
        input_shape=input_shape,
    ).render(objective, batch=batch, progress=progress)


def visualize_channels(
    model: nn.Module,
    layer: LayerRef,
    channels: Sequence[int] | None = None,
    *,
    size: int | tuple[int, int] | None = None,
    steps: int = 256,
    seed: int = 0,
    batching: Batching | int | None = None,
    progress: Progress | None = None,
    input_range: tuple[float, float] | None = None,
    mean: Sequence[float] | float | None = None,
    std: Sequence[float] | float | None = None,
    input_shape: tuple[int, int, int] | None = None,
) -> FeatureVisualization:
    """One image per channel of ``layer`` (None: every channel), with the default
    settings (FFT parameterization, decorrelated colour for RGB, standard transforms,
    Adam at 0.05, redirected ReLU for 16 steps). ``.images`` is ``(K, C, H, W)`` in
    [0, 1]. ``batching`` (an int: images per chunk; None: sized automatically) as everywhere;
    ``input_shape`` ``(C, H, W)`` gives the model's input when ``size`` is not given."""
    return FeatureVisualizer(
        model,
        steps=steps,
        size=size,
        seed=seed,
        input_range=input_range,
        mean=mean,
        std=std,
        input_shape=input_shape,
    ).visualize_channels(layer, channels, batching=batching, progress=progress)
