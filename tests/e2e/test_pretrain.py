"""`stage=pretrain` end to end at toy size: a model from nothing, then pretraining continued from it."""

import pytest
import torch
from safetensors.torch import load_file

from cmt import stages
from cmt.errors import CmtError
from cmt.models import load_tokenizer

# Seconds, not minutes: a few hundred documents, a one-layer model, full precision.
TOY = ["stage=pretrain", "stage.documents=256", "stage.tokenizer_documents=256", "stage.vocab_size=400",
       "stage.architecture.hidden_size=32", "stage.architecture.num_layers=1", "stage.architecture.num_heads=2",
       "stage.architecture.num_kv_heads=1", "stage.architecture.intermediate_size=64", "stage.batch_size=32",
       "stage.precision=32-true", "stage.scheduler.num_warmup_steps=2", "logger=none"]


def _weights(folder):
    return load_file(str(folder / "model.safetensors"))


def test_pretrain_builds_a_model_and_continuing_it_keeps_its_tokenizer_and_shape(cfg_factory, tmp_path):
    first = tmp_path / "first"
    metrics = stages.run(cfg_factory([*TOY, f"stage.output_dir={first}"]))
    assert metrics["pretrain/loss"] == metrics["pretrain/loss"] and metrics["pretrain/parameters"] > 0
    assert (first / "tokenizer.json").is_file()

    # The second run asks for another architecture: init_from wins, so the shape and tokenizer are the first's.
    second = tmp_path / "second"
    stages.run(cfg_factory([*TOY, "seed=1", f"stage.init_from={first}", "stage.architecture.hidden_size=64",
                            f"stage.output_dir={second}"]))
    assert load_tokenizer(str(second)).get_vocab() == load_tokenizer(str(first)).get_vocab()
    before, after = _weights(first), _weights(second)
    assert before.keys() == after.keys()
    assert all(before[name].shape == after[name].shape for name in before)
    assert any(not torch.equal(before[name], after[name]) for name in before), "continued pretraining trained nothing"


def test_init_from_a_folder_without_a_model_is_a_one_line_error(cfg_factory, tmp_path):
    with pytest.raises(CmtError, match="stage.init_from=.*not a saved model folder"):
        stages.run(cfg_factory([*TOY, f"stage.init_from={tmp_path / 'nothing'}",
                                f"stage.output_dir={tmp_path / 'out'}"]))
