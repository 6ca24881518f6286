"""Sharing a finished SFT model between jobs (`cmt.stages.reuse`): what the key sees, and that the store's
files stay as published whatever a job later writes into its own folder."""

from __future__ import annotations

import errno
import json
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from cmt.models import save_model
from cmt.stages.reuse import ModelStore, restore, reuse_key
from cmt.stages.sft import FINGERPRINT_KEYS
from tests.conftest import ROOT


def _training_set(folder: Path, text: str = '{"question": "q", "target": "t"}\n') -> Path:
    path = folder / "comt.jsonl"
    path.write_text(text)
    return path


def test_key_follows_the_sft_inputs_and_nothing_else(cfg_factory, tmp_path):
    data = _training_set(tmp_path)
    key = reuse_key(cfg_factory(), FINGERPRINT_KEYS, data)
    assert reuse_key(cfg_factory(), FINGERPRINT_KEYS, data) == key
    # What happens after SFT, and where the job writes, do not decide the SFT model.
    for after in (["reward=outcome_only"], ["rl=grpo"], ["tag=elsewhere"], ["experiment_name=other"]):
        assert reuse_key(cfg_factory(after), FINGERPRINT_KEYS, data) == key, after
    # The SFT settings, the student, the seed and the training set's bytes do.
    for before in (["sft.optimizer.lr=1e-4"], ["sft.epochs=3"], ["seed=1"], ["model.dtype=bfloat16"]):
        assert reuse_key(cfg_factory(before), FINGERPRINT_KEYS, data) != key, before
    (tmp_path / "other").mkdir()
    other = _training_set(tmp_path / "other", '{"question": "q", "target": "u"}\n')
    assert reuse_key(cfg_factory(), FINGERPRINT_KEYS, other) != key


def test_publish_find_and_restore_link_the_same_files(tiny, tmp_path):
    model, tokenizer = tiny
    trained = tmp_path / "job1" / "comt_sft" / "model"
    save_model(model, tokenizer, trained)
    store = ModelStore(tmp_path / "artifacts", "comt_sft")
    assert store.find("k") is None
    record = {"metrics": {"comt_sft/train_loss": 1.5}, "training": {"train_time_s": 12.0, "train_tokens": 30.0},
              "output_dir": "job1"}
    assert store.publish("k", trained, record)
    stored = store.find("k")
    assert stored is not None and stored.training["training"] == record["training"]
    assert stored.training["metrics"] == record["metrics"] and stored.training["output_dir"] == "job1"

    job2 = tmp_path / "job2" / "comt_sft" / "model"
    job2.mkdir(parents=True)
    (job2 / "stale.bin").write_text("from an older run")
    restore(stored, job2)
    assert sorted(p.name for p in job2.iterdir()) == sorted(p.name for p in trained.iterdir())
    for name in ("model.safetensors", "config.json"):
        assert (job2 / name).stat().st_ino == (trained / name).stat().st_ino == (stored.model_dir / name).stat().st_ino
    # Nothing half-made is left beside the folders.
    assert not [p for p in (tmp_path / "job2" / "comt_sft").iterdir() if p.name.startswith(".")]
    assert [p.name for p in store.root.iterdir()] == ["k"]


def test_a_second_publish_of_a_key_keeps_the_first(tiny, tmp_path):
    model, tokenizer = tiny
    first, second = tmp_path / "a" / "model", tmp_path / "b" / "model"
    save_model(model, tokenizer, first)
    save_model(model, tokenizer, second)
    store = ModelStore(tmp_path / "artifacts", "comt_sft")
    assert store.publish("k", first, {"metrics": {}, "training": {}, "output_dir": "a"})
    assert not store.publish("k", second, {"metrics": {}, "training": {}, "output_dir": "b"})
    assert store.find("k").training["output_dir"] == "a"
    linked = (store.root / "k" / "model" / "model.safetensors").stat().st_ino
    assert linked == (first / "model.safetensors").stat().st_ino
    assert [p.name for p in store.root.iterdir()] == ["k"]


def test_an_entry_without_its_record_or_model_is_not_found(tiny, tmp_path):
    store = ModelStore(tmp_path, "comt_sft")
    (store.root / "no_record" / "model").mkdir(parents=True)
    (store.root / "no_record" / "model" / "config.json").write_text("{}")
    (store.root / "no_model").mkdir()
    (store.root / "no_model" / "training.json").write_text(json.dumps({"metrics": {}}))
    (store.root / "bad_record" / "model").mkdir(parents=True)
    (store.root / "bad_record" / "model" / "config.json").write_text("{}")
    (store.root / "bad_record" / "training.json").write_text("{not json")
    assert [store.find(k) for k in ("no_record", "no_model", "bad_record", "absent")] == [None] * 4


def test_saving_into_a_linked_folder_leaves_the_store_as_published(tiny, tmp_path):
    """A job that trains again into its folder (reuse_sft=false) replaces its links; it must never write
    through them into the store and the other jobs' folders."""
    model, tokenizer = tiny
    trained = tmp_path / "job1" / "model"
    save_model(model, tokenizer, trained)
    store = ModelStore(tmp_path / "artifacts", "comt_sft")
    store.publish("k", trained, {"metrics": {}, "training": {}, "output_dir": "job1"})
    job2 = tmp_path / "job2" / "model"
    restore(store.find("k"), job2)
    published = load_file(store.root / "k" / "model" / "model.safetensors")

    published_config = (store.root / "k" / "model" / "config.json").read_text()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(1.0)
    model.config.retrained = True
    save_model(model, tokenizer, job2)

    assert (job2 / "model.safetensors").stat().st_ino != (trained / "model.safetensors").stat().st_ino
    saved = load_file(job2 / "model.safetensors")
    for folder in (store.root / "k" / "model", trained):
        kept = load_file(folder / "model.safetensors")
        assert kept.keys() == published.keys()
        assert all(torch.equal(kept[name], published[name]) for name in kept)
        assert not all(torch.equal(kept[name], saved[name]) for name in kept)
        assert (folder / "config.json").read_text() == published_config
    assert '"retrained": true' in (job2 / "config.json").read_text()
    assert not [p for p in job2.parent.iterdir() if p.name.startswith(".")]


# A job that claims key "k" of <root>'s comt_sft store, says so in <held>, and holds it until <release> exists.
HOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from cmt.stages.reuse import ModelStore
    root, held, release = map(Path, sys.argv[1:])
    with ModelStore(root, "comt_sft").claim("k", "the holder waited"):
        held.touch()
        while not release.exists():
            time.sleep(0.02)
""")


@pytest.mark.parametrize("first_job_ends", ["done", "killed"])
def test_a_job_claiming_a_held_key_waits_for_the_holder(tmp_path, capsys, first_job_ends):
    held, release = tmp_path / "held", tmp_path / "release"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path), str(held), str(release)], cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while not held.exists():
            assert holder.poll() is None and time.monotonic() < deadline, "the holder never claimed the key"
            time.sleep(0.02)
        acquired = threading.Event()

        def second_job() -> None:
            with ModelStore(tmp_path, "comt_sft").claim("k", "comt_sft: waiting for the job that trains it"):
                acquired.set()

        thread = threading.Thread(target=second_job, daemon=True)
        thread.start()
        assert not acquired.wait(0.5), "the second job went ahead while the first held the key"
        if first_job_ends == "done":
            release.touch()
        else:  # a killed job's lock goes with its process
            holder.kill()
        assert acquired.wait(30)
        thread.join(30)
    finally:
        holder.kill()
        holder.wait(30)
    waited = capsys.readouterr().out
    assert f"comt_sft: waiting for the job that trains it ({tmp_path / 'reuse' / 'comt_sft' / 'k'}.lock)" in waited


@pytest.mark.parametrize(("code", "reason"), [(errno.ENOLCK, "No locks available"),
                                             (errno.ENOSYS, "Function not implemented")])
def test_a_file_system_without_locks_lets_the_job_go_on_unlocked(tmp_path, capsys, monkeypatch, code, reason):
    """Some file systems refuse flock (NFS without its lock daemon: ENOLCK; Lustre mounted noflock: ENOSYS);
    none is mounted here, so the refusal is injected."""
    import fcntl

    def refuse(fd, operation):
        raise OSError(code, reason)

    monkeypatch.setattr(fcntl, "flock", refuse)
    entered = []
    with ModelStore(tmp_path, "comt_sft").claim("k", "waiting"):
        entered.append(True)
    assert entered == [True]
    assert f"cannot lock {tmp_path / 'reuse' / 'comt_sft' / 'k'}.lock ({reason})" in capsys.readouterr().out
