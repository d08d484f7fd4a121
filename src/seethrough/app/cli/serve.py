"""``seethrough serve``: the web explorer on this machine (``seethrough.app.web``)."""

from __future__ import annotations

from typing import Any

from seethrough._core.errors import ConfigError
from seethrough.app.specs import add_model_arguments

__all__ = ["register"]


def register(sub: Any) -> None:
    p = sub.add_parser(
        "serve",
        help="the web explorer: explain, trust, atlas, latent walks and language in the browser",
        description="Serve the explorer on 127.0.0.1 (the URL is printed; nothing is opened). Pages choose among "
        "the bundled models and the ones given here; a page can never make the server load another file.",
    )
    add_model_arguments(p, default="shapes-cnn")
    p.add_argument("--layer", help="layer of layer methods (Grad-CAM, ...) on --model (bundled models: their own)")
    p.add_argument("--data", nargs="+", help="images of --model: bundled name, a folder, image files or a tensor file")
    p.add_argument("--text-model", help="a local transformers model directory (added to kv-lm and smollm2)")
    p.add_argument(
        "--generator", help="a generator for the latent walk: package.module:factory (with --generator-weights)"
    )
    p.add_argument("--generator-weights", help="safetensors weights of --generator")
    p.add_argument("--latent-dim", type=int, help="latent size of --generator, when it has no latent_dim attribute")
    p.add_argument(
        "--out", default="reports/serve", help="output folder: jobs, results, uploads (default: reports/serve)"
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1; others print a warning)")
    p.add_argument("--port", type=int, default=8765, help="port (default: 8765)")
    p.add_argument("--workers", type=int, default=1, help="background jobs run at once (default: 1)")
    p.add_argument("--max-upload-mb", type=float, default=8.0, help="largest upload in MB (default: 8)")
    p.add_argument("--max-pixels", type=int, default=16_000_000, help="largest upload in pixels (default: 16e6)")
    p.set_defaults(handler=_run)


def _run(args: Any) -> int:
    import importlib.util
    from pathlib import Path

    missing = [m for m in ("fastapi", "uvicorn") if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(
            f"the web explorer needs {' and '.join(missing)}, which are not installed: pip install 'seethrough[web]'"
        )
    from seethrough.app.web import ServeConfig, serve

    if not 0 < args.port < 65536:
        raise ConfigError(f"--port must be 1..65535, got {args.port}")
    if args.workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {args.workers}")
    if args.text_model and not Path(args.text_model).is_dir():
        raise ConfigError(
            f"--text-model {args.text_model!r} is not a directory (a transformers save_pretrained folder)"
        )
    config = ServeConfig(
        out=args.out,
        model=args.model,
        weights=args.weights,
        size=args.size,
        channels=args.channels,
        mean=tuple(args.mean) if args.mean else None,
        std=tuple(args.std) if args.std else None,
        data=tuple(args.data) if args.data else None,
        layer=args.layer,
        text_model=args.text_model,
        generator=args.generator,
        generator_weights=args.generator_weights,
        latent_dim=args.latent_dim,
        host=args.host,
        port=args.port,
        workers=args.workers,
        max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
        max_pixels=args.max_pixels,
    )
    serve(config)
    return 0
