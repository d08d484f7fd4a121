"""What every page of the explorer shares: :class:`ServeConfig` and :class:`WebContext`.

The models a page may use are only those named here: the bundled ones and what the server
was started with (``serve --model``, ``--text-model``, ``--generator``). A request names a
model by its key in these lists; a name that is not in them (a path, a module) is refused
with the list, so a page can never make the server load a file it was not started with.

Models used by requests are loaded once and shared, each behind its own lock: two requests
never run methods on one module at the same time (their hooks and modes would mix).
Background jobs load their own copy, so a long job never blocks the pages.
"""

from __future__ import annotations

import difflib
import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from seethrough._core.errors import ConfigError, InputError
from seethrough.app.data import DataSpec
from seethrough.app.models import ModelSpec

from .store import JobStore

__all__ = ["ServeConfig", "WebContext", "ImageChoice", "BUNDLED_CLASSIFIER_DATA"]

#: The data each bundled classifier is shown with (its held-out images).
BUNDLED_CLASSIFIER_DATA = {
    "shapes-cnn": "shapes",
    "shapes-cnn-shortcut": "shapes-shortcut",
    "shapes-cnn-random-labels": "shapes",
    "mnist-cnn": "mnist",
    "stripes-cnn": "stripes",
}
BUNDLED_TEXT_MODELS = ("kv-lm", "smollm2")
BUNDLED_GENERATORS = ("scenes-gan", "mnist-gan", "scenes-vae", "mnist-vae")


@dataclass(frozen=True)
class ServeConfig:
    """How ``seethrough serve`` was started.

    ``model`` (with ``weights``, ``size``, ``channels``, ``mean``, ``std``): an image
    classifier of the user's, added to the bundled ones; ``data``: its images (bundled
    name, a folder, image files or a tensor file; default: the bundled model's own data).
    ``text_model``: a local transformers directory added to the bundled language models.
    ``layer``: the layer of layer methods (Grad-CAM, ...) on ``model`` (a bundled model: its
    card's). ``generator`` (with ``generator_weights``, ``latent_dim``): a generator of the user's
    (``module:factory``) for the latent walk. ``out``: the output root (job store, job
    outputs, uploads); the only folder files are served from.
    """

    out: str = "reports/serve"
    model: str = "shapes-cnn"
    weights: str | None = None
    size: int | None = None
    channels: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    data: tuple[str, ...] | None = None
    layer: str | None = None
    text_model: str | None = None
    generator: str | None = None
    generator_weights: str | None = None
    latent_dim: int | None = None
    host: str = "127.0.0.1"
    port: int = 8765
    workers: int = 1
    max_queued: int = 32
    max_upload_bytes: int = 8 * 1024 * 1024
    max_pixels: int = 16_000_000
    gallery: int = 24
    extra_hosts: tuple[str, ...] = field(default_factory=tuple)

    def allowed_hosts(self) -> set[str]:
        hosts = {f"{self.host}:{self.port}", f"127.0.0.1:{self.port}", f"localhost:{self.port}"}
        if self.host in ("0.0.0.0", "::"):
            hosts.add(f"[::1]:{self.port}")
        return hosts | set(self.extra_hosts)


@dataclass(frozen=True)
class ImageChoice:
    """An image model a page can use, with its data."""

    key: str
    spec: ModelSpec
    data: DataSpec | None
    served: bool
    layer: str | None = None


def close_choice(name: Any, choices: list[str], what: str) -> ConfigError:
    near = difflib.get_close_matches(str(name), choices, n=3, cutoff=0.4)
    hint = f" Did you mean {', '.join(map(repr, near))}?" if near else ""
    return ConfigError(
        f"unknown {what} {name!r}.{hint} This server offers: {', '.join(choices)} "
        f"(another model is given to 'seethrough serve' when it starts, never by a page)"
    )


class _Slot:
    """A lazily loaded object and the lock that serialises its use."""

    def __init__(self, load: Callable[[], Any]) -> None:
        self._load, self._value, self.lock = load, None, threading.RLock()

    def get(self) -> Any:
        with self.lock:
            if self._value is None:
                self._value = self._load()
            return self._value


class WebContext:
    """The configuration, the job store and runner, and the shared models of one server."""

    def __init__(self, config: ServeConfig) -> None:
        from seethrough import zoo

        self.config = config
        self.root = Path(config.out).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.store = JobStore(self.root / ".jobs.sqlite")
        self._slots: dict[tuple[str, str], _Slot] = {}
        self._slots_lock = threading.Lock()
        self.runner: Any = None  # set by create_app
        # the image models: bundled classifiers, and the served one first
        choices: dict[str, ImageChoice] = {}
        served = ModelSpec(
            config.model,
            weights=config.weights,
            size=config.size,
            channels=config.channels,
            mean=config.mean,
            std=config.std,
        )
        choices[config.model] = ImageChoice(
            config.model, served, self._data_for(served), not served.bundled, config.layer or served.default_layer
        )
        for name in zoo.available("classifier"):
            if name not in choices:
                spec = ModelSpec(name)
                choices[name] = ImageChoice(name, spec, self._data_for(spec), False, spec.default_layer)
        self.image_choices = choices
        self.text_choices = ([config.text_model] if config.text_model else []) + list(BUNDLED_TEXT_MODELS)
        self.generator_choices = ([config.generator] if config.generator else []) + list(BUNDLED_GENERATORS)

    def _data_for(self, spec: ModelSpec) -> DataSpec | None:
        from seethrough.app.specs import data_spec

        source: Any = None
        if spec.name == self.config.model and self.config.data:
            source = list(self.config.data)
        elif spec.name in BUNDLED_CLASSIFIER_DATA:
            source = [BUNDLED_CLASSIFIER_DATA[spec.name]]
        if source is None:
            return None
        args = type("Args", (), {"data": source, "n": None, "data_seed": None, "tensor_key": None})()
        return data_spec(args, spec)

    # ------------------------------------------------------------------ choices
    def image_choice(self, key: Any) -> ImageChoice:
        if not isinstance(key, str) or key not in self.image_choices:
            raise close_choice(key, list(self.image_choices), "image model")
        return self.image_choices[key]

    def text_choice(self, key: Any) -> str:
        if not isinstance(key, str) or key not in self.text_choices:
            raise close_choice(key, self.text_choices, "language model")
        return key

    def generator_choice(self, key: Any) -> str:
        if not isinstance(key, str) or key not in self.generator_choices:
            raise close_choice(key, self.generator_choices, "generator")
        return key

    # ------------------------------------------------------------------ shared objects
    def slot(self, kind: str, key: str, load: Callable[[], Any]) -> _Slot:
        with self._slots_lock:
            s = self._slots.get((kind, key))
            if s is None:
                s = self._slots[(kind, key)] = _Slot(load)
            return s

    def image_model(self, key: str) -> _Slot:
        choice = self.image_choice(key)
        return self.slot("image", key, lambda: choice.spec.load().eval())

    def gallery(self, key: str) -> Any:
        """The first images of the model's data (a :class:`~seethrough.app.data.Data`)."""
        choice = self.image_choice(key)
        if choice.data is None:
            raise InputError(f"model {key!r} has no data to pick from; upload an image, or start serve with --data")
        data = choice.data
        return self.slot("gallery", key, lambda: data.load(default_n=self.config.gallery)).get()

    def text_model(self, key: str) -> _Slot:
        name = self.text_choice(key)

        def load() -> Any:
            from seethrough.app.texts import load_text_model

            return load_text_model(name)

        return self.slot("text", name, load)

    # ------------------------------------------------------------------ files
    def job_dir(self, job_id: str) -> Path:
        d = self.root / "jobs" / job_id
        d.mkdir(parents=True, exist_ok=True)
        return d

    def rel(self, path: Path) -> str:
        """A path under the root as the relative URL part that /files/ serves."""
        return Path(path).resolve().relative_to(self.root).as_posix()

    def upload_path(self, sha: str) -> Path:
        if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise InputError(f"unknown upload {sha!r}; upload the image again")
        return self.root / "uploads" / f"{sha}.png"

    def upload_image(self, key: str, sha: str) -> Tensor:
        """An uploaded image, read at the model's input size, channels and normalisation."""
        from seethrough._core.files import load_images

        path = self.upload_path(sha)
        if not path.is_file():
            raise InputError(f"unknown upload {sha[:12]}...; upload the image again")
        spec = self.image_choice(key).spec
        shape = spec.require_input_shape("an uploaded image")
        mean, std = spec.normalization
        return load_images([path], size=shape[1], channels=shape[0], mean=mean, std=std)

    def display(self, key: str, x: Tensor) -> Tensor:
        """``x`` without the model's normalisation, for showing."""
        mean, std = self.image_choice(key).spec.normalization
        if std is not None:
            x = x * torch.tensor(std, dtype=x.dtype).reshape(-1, 1, 1)
        if mean is not None:
            x = x + torch.tensor(mean, dtype=x.dtype).reshape(-1, 1, 1)
        return x.clamp(0, 1)


def digest(*parts: Any) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(repr(p).encode())
        h.update(b"\x00")
    return h.hexdigest()[:20]
