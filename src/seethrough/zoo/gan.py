"""The zoo's GANs and the scenes segmenter (plain PyTorch).

* :class:`DCGANGenerator`: a DCGAN-style generator ``z (N, Z) -> images (N, C, S, S)`` in
  ``[0, 1]`` with hierarchical latent inputs: ``n_latent_layers = 1 + n_blocks`` codes, one
  for ``fc`` and one for the FiLM modulation of each upsampling block. Per-layer codes
  ``(N, L, Z)`` feed input ``l`` with ``z[:, l]``; plain codes ``(N, Z)`` feed every input
  (the protocol of :class:`seethrough.generative.Generator`).
* :class:`DCGANDiscriminator`: the matching critic, ``images -> (N, 1)`` logits of "real".
* :class:`ScenesSegmenter`: a small fully convolutional net that labels every pixel of a
  :mod:`seethrough.data.factors` scene with its shape class and its colour class
  (:meth:`ScenesSegmenter.segment`), the concept segmenter of GAN dissection.
* :func:`bundled`: the untrained architectures of the shipped models with their exact
  hyper-parameters (:data:`BUNDLED`).

Layers of :class:`DCGANGenerator` by dotted name (``named_modules()``), for dissection,
SeFa and GANSpace (``B`` = ``n_blocks``: 2 for 28 pixels, 3 for 32 pixels):

======================  ===================================================================
``fc``                  Linear ``latent_dim -> C0 x s0 x s0``: the first layer that takes z
                        (latent input 0); ``s0`` = 7 for 28 pixels, 4 for 32 pixels
``fc_bn``               BatchNorm2d of the reshaped ``fc`` output (then ReLU)
``blocks.{i}``          block ``i``: output ``relu(bn(conv(h)) * (1 + gamma) + beta)`` with
                        ``(gamma, beta) = film(z_{i+1})``, post-ReLU (non-negative) maps
``blocks.{i}.conv``     ConvTranspose2d(4, stride 2, padding 1): doubles the side
``blocks.{i}.bn``       BatchNorm2d
``blocks.{i}.film``     Linear ``latent_dim -> 2 x channels`` (latent input ``i + 1``)
``blocks.{i}.relu``     ReLU (the block's output, same as ``blocks.{i}``)
``to_image``            Conv2d(3x3) to the image channels: the logits
``out``                 Sigmoid: the images
======================  ===================================================================

Shipped shapes: ``mnist-gan`` (latent 16, width 16): ``fc`` 64 x 7 x 7, ``blocks.0`` 32 x 14 x 14,
``blocks.1`` 16 x 28 x 28; ``scenes-gan`` (latent 12, width 16): ``fc`` 128 x 4 x 4, ``blocks.0``
64 x 8 x 8, ``blocks.1`` 32 x 16 x 16, ``blocks.2`` 16 x 32 x 32.

Every model here checks its inputs; all are in eval mode after :func:`seethrough.zoo.load`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .._core.errors import ConfigError, InputError

__all__ = [
    "DCGANGenerator",
    "DCGANDiscriminator",
    "ScenesSegmenter",
    "GeneratorBlock",
    "bundled",
    "BUNDLED",
    "start_size",
]


def _check_int(name: str, v: Any, lo: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise ConfigError(f"{name} must be an int >= {lo}, got {v!r}")
    return int(v)


def start_size(size: int) -> tuple[int, int]:
    """``(s0, n_blocks)``: the side of the first feature map and the number of doublings
    that reach ``size`` (halve while the side is even and above 7: 28 -> (7, 2), 32 -> (4, 3),
    64 -> (4, 4))."""
    s, n = _check_int("size", size, 8), 0
    while s % 2 == 0 and s > 7:
        s //= 2
        n += 1
    if n == 0 or not 3 <= s <= 7:
        raise ConfigError(
            f"size {size} cannot be reached by doubling from a side of 3 to 7 pixels; use e.g. 28, 32 or 64"
        )
    return s, n


def _check_images(x: Any, shape: tuple[int, int, int], who: str) -> Tensor:
    want = ", ".join(map(str, shape))
    if not isinstance(x, Tensor):
        raise InputError(f"{who} takes a float tensor of shape (N, {want}) in [0, 1], got {type(x).__name__}")
    if x.dim() == 3 and tuple(x.shape) == shape:
        raise InputError(f"{who} takes a batch (N, {want}); got one image {tuple(x.shape)}: add the batch dimension")
    if x.dim() != 4 or tuple(x.shape[1:]) != shape:
        raise InputError(f"{who} takes images of shape (N, {want}) in [0, 1], got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise InputError(f"{who} takes float images in [0, 1], got dtype {x.dtype}; divide uint8 images by 255")
    return x


class GeneratorBlock(nn.Module):
    """One upsampling block of :class:`DCGANGenerator`: ``relu(bn(conv(h)) * (1 + gamma) + beta)``
    with ``(gamma, beta) = film(z)`` (FiLM from the block's own latent input)."""

    def __init__(self, cin: int, cout: int, latent_dim: int) -> None:
        super().__init__()
        self.channels = int(cout)
        self.conv = nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.film = nn.Linear(latent_dim, 2 * cout)
        self.relu = nn.ReLU()

    def forward(self, h: Tensor, z: Tensor) -> Tensor:
        gamma, beta = self.film(z).chunk(2, dim=1)
        return self.relu(self.bn(self.conv(h)) * (1.0 + gamma[:, :, None, None]) + beta[:, :, None, None])


class DCGANGenerator(nn.Module):
    """DCGAN-style generator of ``(channels, size, size)`` images in ``[0, 1]`` (layer names
    in the module docstring).

    ``fc`` maps z to ``C0 = width x 2^B`` maps of side ``s0`` (:func:`start_size`); block ``i``
    halves the channels and doubles the side, down to ``width`` channels at ``size``; a 3x3
    convolution and a sigmoid give the image.

    Args:
        latent_dim: size of one code ``z``.
        channels: image channels (1 or 3).
        size: image side (28, 32, 64, ...: see :func:`start_size`).
        width: channels of the last block.
        seed: seed of the initial weights (private RNG; the global one is untouched).

    Attributes:
        latent_dim, n_latent_layers (``1 + n_blocks``), image_shape, n_blocks.
    """

    def __init__(self, latent_dim: int, channels: int, size: int, *, width: int = 32, seed: int | None = None) -> None:
        super().__init__()
        self.latent_dim = _check_int("latent_dim", latent_dim, 1)
        _check_int("channels", channels, 1)
        _check_int("width", width, 1)
        s0, n_blocks = start_size(size)
        self.image_shape = (int(channels), int(size), int(size))
        self.n_blocks = n_blocks
        self.n_latent_layers = 1 + n_blocks
        self._start = (width * 2**n_blocks, s0)
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            c0 = width * 2**n_blocks
            self.fc = nn.Linear(self.latent_dim, c0 * s0 * s0)
            self.fc_bn = nn.BatchNorm2d(c0)
            self.blocks = nn.ModuleList(
                GeneratorBlock(width * 2 ** (n_blocks - i), width * 2 ** (n_blocks - i - 1), self.latent_dim)
                for i in range(n_blocks)
            )
            self.to_image = nn.Conv2d(width, channels, 3, padding=1)
            self.out = nn.Sigmoid()
            self._init()

    def _init(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.normal_(m.weight, 0.0, 0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.fc.weight, 0.0, 0.02)
        nn.init.zeros_(self.fc.bias)
        for b in self.blocks:
            assert isinstance(b, GeneratorBlock)
            nn.init.normal_(b.film.weight, 0.0, 0.02)
            nn.init.zeros_(b.film.bias)

    def _codes(self, z: Any) -> list[Tensor]:
        L, Z = self.n_latent_layers, self.latent_dim
        if not isinstance(z, Tensor) or not z.is_floating_point():
            got = f"dtype {z.dtype}" if isinstance(z, Tensor) else type(z).__name__
            raise InputError(f"the generator takes float codes (N, {Z}) or per-layer codes (N, {L}, {Z}), got {got}")
        if z.dim() == 2 and z.shape[1] == Z:
            return [z] * L
        if z.dim() == 3 and z.shape[1] == L and z.shape[2] == Z:
            return list(z.unbind(1))
        if z.dim() == 4 and z.shape[1] == Z and z.shape[2] == z.shape[3] == 1:
            return [z.flatten(1)] * L  # DCGAN-style (N, Z, 1, 1)
        raise InputError(
            f"latent codes must have shape (N, {Z}) or per-layer (N, {L}, {Z}), got {tuple(z.shape)}; "
            f"sample z = torch.randn(n, {Z})"
        )

    def logits(self, z: Tensor) -> Tensor:
        """Pre-sigmoid images of codes ``z``."""
        codes = self._codes(z)
        c0, s0 = self._start
        h = torch.relu(self.fc_bn(self.fc(codes[0]).view(-1, c0, s0, s0)))
        for i, block in enumerate(self.blocks):
            h = block(h, codes[i + 1])
        return self.to_image(h)

    def forward(self, z: Tensor) -> Tensor:
        """Images ``(N, C, S, S)`` in ``[0, 1]`` of codes ``(N, Z)`` or ``(N, L, Z)``."""
        return self.out(self.logits(z))

    def decode(self, z: Tensor) -> Tensor:
        """Same as ``forward`` (the decoder side of the latent protocol)."""
        return self(z)

    def sample(self, n: int, *, seed: int = 0) -> Tensor:
        """``n`` images from ``z ~ N(0, I)`` drawn with a private generator seeded ``seed``
        (no gradients; the model's mode is kept)."""
        z = torch.randn(_check_int("n", n, 0), self.latent_dim, generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            return self(z)


class DCGANDiscriminator(nn.Module):
    """DCGAN-style critic ``(N, C, S, S)`` images in ``[0, 1]`` -> ``(N, 1)`` logits of "real".

    ``features.{i}`` (as many as the generator has doublings) are stride-2 4x4 convolutions
    with ``width x 2^i`` channels: ``features.{i}.conv``, ``features.{i}.bn`` (BatchNorm2d, an
    Identity in block 0 as in DCGAN) and ``features.{i}.act`` (LeakyReLU(0.2)); ``head``: Linear
    on the flattened last map (``features.{n-1}``, the default CAM layer)."""

    def __init__(
        self, channels: int, size: int, *, width: int = 32, norm: str = "batch", seed: int | None = None
    ) -> None:
        super().__init__()
        _check_int("channels", channels, 1)
        if norm not in ("batch", "none"):
            raise ConfigError(f"norm must be 'batch' or 'none', got {norm!r}")
        s0, n_blocks = start_size(size)
        self.image_shape = (int(channels), int(size), int(size))
        self.norm = norm
        self.default_cam_layer = f"features.{n_blocks - 1}"
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            blocks: list[nn.Module] = []
            cin = channels
            for i in range(n_blocks):
                cout = width * 2**i
                block = nn.Sequential()
                use_bn = i > 0 and norm == "batch"
                block.add_module("conv", nn.Conv2d(cin, cout, 4, stride=2, padding=1, bias=not use_bn))
                block.add_module("bn", nn.BatchNorm2d(cout) if use_bn else nn.Identity())
                block.add_module("act", nn.LeakyReLU(0.2))
                blocks.append(block)
                cin = cout
            self.features = nn.Sequential(*blocks)
            self.flatten = nn.Flatten()
            self.head = nn.Linear(cin * s0 * s0, 1)
            for m in self.modules():
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    nn.init.normal_(m.weight, 0.0, 0.02)
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)
                elif isinstance(m, nn.BatchNorm2d):
                    nn.init.normal_(m.weight, 1.0, 0.02)
                    nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = _check_images(x, self.image_shape, "DCGANDiscriminator")
        return self.head(self.flatten(self.features(x)))


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1), nn.BatchNorm2d(cout), nn.ReLU())


class ScenesSegmenter(nn.Module):
    """Per-pixel shape and colour classes of :mod:`seethrough.data.factors` scenes.

    A small U-Net (``w = width``; every conv is 3x3 + BatchNorm + ReLU): ``stem`` (``w``
    channels at S), ``down1`` (``2w`` at S/2), ``down2`` (``4w`` at S/4), ``down3`` (``8w`` at
    S/8; its receptive field covers the object), then ``up2``, ``up1``, ``up0`` (nearest
    upsampling with skip connections back to S) and a 1x1 ``head``. A global-context branch
    (``context``: an MLP on the mean- and max-pooled ``down3`` maps) adds image-level shape
    logits to every pixel's (one object per scene, so its shape is an image-level fact).
    ``forward`` gives logits ``(N, n_shapes + 1 + n_colors + 1, S, S)``: the shape classes
    (:attr:`shape_classes`: background, then the shapes) then the colour classes
    (:attr:`color_classes`: background, then the colours).
    """

    def __init__(
        self,
        *,
        size: int = 32,
        shape_names: tuple[str, ...] = ("square", "ellipse", "triangle", "heart"),
        color_names: tuple[str, ...] = ("red", "green", "blue", "yellow", "white"),
        width: int = 16,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        if _check_int("size", size, 8) % 8:
            raise ConfigError(f"size must be a multiple of 8 (three halvings), got {size}")
        self.image_shape = (3, int(size), int(size))
        self.shape_classes: tuple[str, ...] = ("background", *shape_names)
        self.color_classes: tuple[str, ...] = ("background", *color_names)
        w = _check_int("width", width, 1)
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            self.stem = _conv(3, w)
            self.down1 = _conv(w, 2 * w, 2)
            self.down2 = nn.Sequential(_conv(2 * w, 4 * w, 2), _conv(4 * w, 4 * w))
            self.down3 = nn.Sequential(_conv(4 * w, 8 * w, 2), _conv(8 * w, 8 * w))
            self.up = nn.Upsample(scale_factor=2, mode="nearest")
            self.up2 = _conv(12 * w, 4 * w)
            self.up1 = _conv(6 * w, 2 * w)
            self.up0 = _conv(3 * w, w)
            self.head = nn.Conv2d(w, len(self.shape_classes) + len(self.color_classes), 1)
            # global context: one object per scene, so its shape is an image-level fact
            self.context = nn.Sequential(nn.Linear(16 * w, 8 * w), nn.ReLU(), nn.Linear(8 * w, len(self.shape_classes)))

    def forward(self, x: Tensor) -> Tensor:
        x = _check_images(x, self.image_shape, "ScenesSegmenter")
        h0 = self.stem(x)
        h1 = self.down1(h0)
        h2 = self.down2(h1)
        h3 = self.down3(h2)
        u2 = self.up2(torch.cat([self.up(h3), h2], 1))
        u1 = self.up1(torch.cat([self.up(u2), h1], 1))
        u0 = self.up0(torch.cat([self.up(u1), h0], 1))
        out = self.head(u0)
        pooled = torch.cat([h3.mean((2, 3)), h3.amax((2, 3))], 1)
        k = len(self.shape_classes)
        return torch.cat([out[:, :k] + self.context(pooled)[:, :, None, None], out[:, k:]], 1)

    def split(self, logits: Tensor) -> tuple[Tensor, Tensor]:
        """``forward`` output -> (shape logits, colour logits)."""
        k = len(self.shape_classes)
        return logits[:, :k], logits[:, k:]

    @torch.no_grad()
    def segment(self, images: Tensor, *, batch_size: int = 256) -> Tensor:
        """Label maps ``(N, 2, H, W)`` int64 of ``images`` ``(N, 3, H, W)`` in ``[0, 1]``:
        channel 0 the shape class (0 background, ``1 + SHAPE_NAMES`` index), channel 1 the
        colour class (0 background, ``1 + COLOR_NAMES`` index). Runs in chunks of
        ``batch_size`` images (the model's mode is kept)."""
        images = _check_images(images, self.image_shape, "ScenesSegmenter.segment")
        _check_int("batch_size", batch_size, 1)
        out = []
        for i in range(0, len(images), batch_size):
            s, c = self.split(self(images[i : i + batch_size]))
            out.append(torch.stack([s.argmax(1), c.argmax(1)], 1))
        if not out:
            return torch.zeros(0, 2, *self.image_shape[1:], dtype=torch.long)
        return torch.cat(out)

    def concept_masks(self, images: Tensor, *, batch_size: int = 256) -> dict[str, Tensor]:
        """``{concept: bool (N, H, W)}`` for every shape and colour name (not the background):
        the pixels :meth:`segment` gives that class."""
        labels = self.segment(images, batch_size=batch_size)
        masks: dict[str, Tensor] = {}
        for ch, names in ((0, self.shape_classes), (1, self.color_classes)):
            for k, name in enumerate(names[1:], start=1):
                masks[name] = labels[:, ch] == k
        return masks


#: Shipped hyper-parameters of the bundled GANs and the segmenter (see :func:`bundled`).
BUNDLED: dict[str, dict[str, Any]] = {
    "mnist-gan": {"architecture": "DCGANGenerator", "latent_dim": 16, "channels": 1, "size": 28, "width": 16},
    "mnist-gan-d": {"architecture": "DCGANDiscriminator", "channels": 1, "size": 28, "width": 16},
    "mnist-gan-memorized": {"architecture": "DCGANGenerator", "latent_dim": 16, "channels": 1, "size": 28, "width": 16},
    "scenes-gan": {"architecture": "DCGANGenerator", "latent_dim": 12, "channels": 3, "size": 32, "width": 16},
    "scenes-gan-d": {"architecture": "DCGANDiscriminator", "channels": 3, "size": 32, "width": 16},
    "scenes-segmenter": {"architecture": "ScenesSegmenter", "size": 32, "width": 8},
}


def bundled(name: str, *, seed: int | None = None) -> nn.Module:
    """The untrained architecture of a bundled model of this module (:data:`BUNDLED`)."""
    if name not in BUNDLED:
        raise ConfigError(f"unknown bundled GAN model {name!r}; choose from {', '.join(BUNDLED)}")
    cfg = dict(BUNDLED[name])
    arch = cfg.pop("architecture")
    if arch == "DCGANGenerator":
        return DCGANGenerator(cfg["latent_dim"], cfg["channels"], cfg["size"], width=cfg["width"], seed=seed)
    if arch == "DCGANDiscriminator":
        return DCGANDiscriminator(
            cfg["channels"], cfg["size"], width=cfg["width"], norm=cfg.get("norm", "batch"), seed=seed
        )
    from ..data.factors import COLOR_NAMES, SHAPE_NAMES

    return ScenesSegmenter(
        size=cfg["size"], shape_names=SHAPE_NAMES, color_names=COLOR_NAMES, width=cfg["width"], seed=seed
    )
