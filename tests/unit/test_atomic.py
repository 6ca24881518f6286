"""Writing files and folders through a scratch entry and a rename (`cmt.atomic`): a failed write keeps the
old version, a reader never finds half of one, and nothing hidden is left behind."""

from __future__ import annotations

import stat

import pytest

from cmt.atomic import atomic_write, publish_new, replace_folder, scratch_folder


def _listing(folder):
    return sorted(p.name for p in folder.iterdir())


def test_atomic_write_replaces_the_file_only_when_the_block_ends(tmp_path):
    path = tmp_path / "sub" / "data.txt"
    with atomic_write(path) as handle:
        handle.write("one\n")
    assert path.read_text() == "one\n"
    with atomic_write(path) as handle:
        handle.write("two\n")
        handle.flush()
        assert path.read_text() == "one\n", "a reader saw the new content before it was complete"
    assert path.read_text() == "two\n"
    assert _listing(path.parent) == ["data.txt"]


def test_a_write_that_fails_midway_leaves_the_old_file_and_no_scratch(tmp_path):
    path = tmp_path / "data.txt"
    path.write_text("old and whole\n")
    with pytest.raises(RuntimeError, match="crash"):
        with atomic_write(path) as handle:
            handle.write("half of the new")
            raise RuntimeError("crash")
    assert path.read_text() == "old and whole\n"
    assert _listing(tmp_path) == ["data.txt"]


def test_a_scratch_folder_is_hidden_beside_its_target_shared_and_gone_afterwards(tmp_path):
    target = tmp_path / "model"
    with pytest.raises(RuntimeError):
        with scratch_folder(target) as scratch:
            assert scratch.parent == tmp_path and scratch.name.startswith(".model.tmp-")
            assert stat.S_IMODE(scratch.stat().st_mode) & 0o055, "made private, as tempfile.mkdtemp would"
            (scratch / "weights").write_text("w")
            raise RuntimeError("the build failed")
    assert _listing(tmp_path) == []


def test_publish_new_keeps_the_first_folder_under_a_name(tmp_path):
    target = tmp_path / "key"
    with scratch_folder(target) as first:
        (first / "f").write_text("first")
        assert publish_new(first, target) is True
    with scratch_folder(target) as second:
        (second / "f").write_text("second")
        assert publish_new(second, target) is False
        assert (second / "f").read_text() == "second"
    assert (target / "f").read_text() == "first"
    assert _listing(tmp_path) == ["key"]


def test_publish_new_raises_other_failures(tmp_path):
    with pytest.raises(FileNotFoundError):
        publish_new(tmp_path / "absent", tmp_path / "key")


def test_replace_folder_swaps_the_whole_folder(tmp_path):
    target = tmp_path / "checkpoint"
    target.mkdir()
    (target / "old-only").write_text("old")
    (target / "shared").write_text("old")
    with scratch_folder(target) as scratch:
        (scratch / "shared").write_text("new")
        replace_folder(scratch, target)
    assert _listing(target) == ["shared"] and (target / "shared").read_text() == "new"
    assert _listing(tmp_path) == ["checkpoint"]
    with scratch_folder(tmp_path / "fresh") as scratch:  # no folder to replace yet
        (scratch / "f").write_text("x")
        replace_folder(scratch, tmp_path / "fresh")
    assert (tmp_path / "fresh" / "f").read_text() == "x"


def test_a_failed_replace_puts_the_old_folder_back(tmp_path):
    target = tmp_path / "checkpoint"
    target.mkdir()
    (target / "f").write_text("old")
    with pytest.raises(FileNotFoundError):
        replace_folder(tmp_path / "vanished-scratch", target)
    assert (target / "f").read_text() == "old"
    assert _listing(tmp_path) == ["checkpoint"]
