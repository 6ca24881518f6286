"""trainer=ddp on a CPU: two gloo processes train the SFT module like one process on the same global batches.

A tiny random Qwen2 is trained for a few steps two ways, each in a fresh interpreter (this file is also
the script, ``python -m tests.e2e.test_ddp MODE OUT``):

- ``single``: one process, ``conf/trainer/default.yaml``, batch 8;
- ``ddp``: ``conf/trainer/ddp.yaml`` with two CPU processes, batch 4 each, batches sharded by
  `cmt.data.distributed` (the wiring proposed for `cmt.data.sft.SFTDataModule`), and the stages'
  checkpoint I/O, through which ``ddp_spawn`` hands the trained weights back to the job's process.

Every example has the same prompt and target length, so each shard of a step holds the same number of
target tokens and DDP's averaged gradient is exactly the global batch's: losses and weights must agree.
The ``ddp`` run also records which examples the unchanged `SFTDataModule` would hand each process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from torch.utils.data import DataLoader

from cmt.checkpointing import SafeCheckpointIO
from cmt.data.distributed import DistributedLengthGroupedSampler, length_grouped_sampler
from cmt.data.sft import IGNORE_INDEX, Example, LengthGroupedSampler, SFTDataModule
from cmt.modules.sft import SFTModule
from cmt.stages.sft import trained_tokens
from tests.conftest import CONF, ROOT

N_EXAMPLES, GLOBAL_BATCH, PROMPT_LEN, TARGET_LEN, VOCAB = 40, 8, 4, 8, 64
WORLD = 2


def _examples() -> list[Example]:
    """Distinct random sequences of one length; the loss is on the last TARGET_LEN tokens."""
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(2, VOCAB, (N_EXAMPLES, PROMPT_LEN + TARGET_LEN), generator=generator).tolist()
    return [Example(row, [IGNORE_INDEX] * PROMPT_LEN + row[PROMPT_LEN:]) for row in ids]


def _tiny_model():
    """A random Qwen2 of about 40K parameters, the same weights on every call."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    return Qwen2ForCausalLM(Qwen2Config(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                        num_key_value_heads=2, intermediate_size=64, max_position_embeddings=64,
                                        pad_token_id=0, eos_token_id=1, bos_token_id=None))


class ShardedSFTData(SFTDataModule):
    """SFTDataModule with the proposed train_dataloader: batches sharded over the trainer's processes."""

    def train_dataloader(self) -> DataLoader:
        sampler = length_grouped_sampler([len(e.input_ids) for e in self.train], self.batch_size, self.seed,
                                         self.trainer)
        return DataLoader(self.train, batch_sampler=sampler, collate_fn=self._collate)


class Recorder(pl.Callback):
    """Writes, per process, each step's loss and examples, and the batches the unchanged SFTDataModule gives it."""

    def __init__(self, examples: list[Example], out: Path):
        self.examples, self.out = examples, out
        self.key = {tuple(e.input_ids): i for i, e in enumerate(examples)}
        self.steps: list[dict] = []
        self.plain: list[list[int]] = []

    def on_train_start(self, trainer, pl_module):
        plain = SFTDataModule(self.examples, [], GLOBAL_BATCH // trainer.world_size, 0, 0)
        plain.trainer = trainer
        self.plain = [list(batch) for batch in plain.train_dataloader().batch_sampler]

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.steps.append({"loss": float(outputs["loss"]),
                           "examples": [self.key[tuple(row)] for row in batch["input_ids"].tolist()]})

    def teardown(self, trainer, pl_module, stage):
        """Runs after the trainer config's own callbacks have torn down (they come first in the list)."""
        record = {"world_size": trainer.world_size, "steps": self.steps, "plain": self.plain,
                  "group_open_after_fit": torch.distributed.is_initialized()}
        (self.out / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))


def _trainer_config(name: str, devices: int):
    from hydra import compose, initialize_config_dir

    overrides = [f"trainer={name}", "trainer.accelerator=cpu", f"trainer.devices={devices}",
                 "trainer.precision=32-true", "logger=none"]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=overrides).trainer


def _main(mode: str, out: Path) -> None:
    """Train and write per-process step records (rank<r>.json) and the final weights (weights.pt)."""
    torch.set_num_threads(1)
    examples = _examples()

    world = WORLD if mode == "ddp" else 1
    model = _tiny_model()
    module = SFTModule(model, partial(torch.optim.AdamW, lr=1e-2))
    data = ShardedSFTData(examples, [], GLOBAL_BATCH // world, 0, 0)
    config = _trainer_config("ddp" if mode == "ddp" else "default", world)
    callbacks = [*instantiate(config.get("callbacks") or []), Recorder(examples, out)]
    # The stages' checkpoint I/O, through which ddp_spawn hands the trained weights back (cmt/stages/sft.py).
    plugins = [*instantiate(config.get("plugins") or []), SafeCheckpointIO(keep=1)]
    trainer = instantiate(config, max_epochs=2, logger=False, callbacks=callbacks, plugins=plugins,
                          enable_progress_bar=False)
    model.train()
    trainer.fit(module, datamodule=data)
    torch.save({k: v.detach().clone() for k, v in module.model.state_dict().items()}, out / "weights.pt")
    (out / "tokens.json").write_text(json.dumps(trained_tokens(trainer, module)))


def test_sharded_batches_cover_each_global_batch_once_and_keep_processes_in_step():
    lengths = [3, 9, 4, 8, 5, 7, 6, 2, 1]  # 9 examples, global batches of 2 x 2: 4, 4 and 1
    single = [sorted(b) for b in LengthGroupedSampler(lengths, 4, seed=3)]
    shards = [list(DistributedLengthGroupedSampler(lengths, 2, seed=3, num_replicas=2, rank=r)) for r in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == len(single) == 3
    for step, (a, b) in enumerate(zip(*shards, strict=True)):
        if len(single[step]) >= 2:
            assert sorted(a + b) == single[step] and abs(len(a) - len(b)) <= 1
        else:  # fewer examples than processes: repeated, so that no process waits for the other
            assert a == b == single[step]
    assert isinstance(length_grouped_sampler(lengths, 2, 0, trainer=None), LengthGroupedSampler)


@pytest.mark.parametrize(("replicas", "rank"), [(2, 2), (2, -1), (0, 0)])
def test_distributed_sampler_rejects_a_rank_outside_the_world(replicas, rank):
    with pytest.raises(ValueError, match="must be"):
        DistributedLengthGroupedSampler([1, 2, 3], 1, 0, replicas, rank)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The single-process and the DDP run, each in its own interpreter; returns their output folders."""
    folders = {}
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    for mode in ("single", "ddp"):
        folders[mode] = tmp_path_factory.mktemp(mode)
        out = subprocess.run([sys.executable, "-m", "tests.e2e.test_ddp", mode, str(folders[mode])], cwd=ROOT,
                             env=env, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-3000:]
    return folders


def _records(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("rank*.json"))]


@pytest.mark.slow
def test_ddp_runs_two_processes_that_split_every_global_batch(runs):
    single, ranks = _records(runs["single"])[0], _records(runs["ddp"])
    assert [r["world_size"] for r in ranks] == [WORLD, WORLD]
    assert len(ranks[0]["steps"]) == len(ranks[1]["steps"]) == len(single["steps"]) == 2 * N_EXAMPLES // GLOBAL_BATCH
    for step, (a, b) in enumerate(zip(ranks[0]["steps"], ranks[1]["steps"], strict=True)):
        assert not set(a["examples"]) & set(b["examples"])
        assert sorted(a["examples"] + b["examples"]) == sorted(single["steps"][step]["examples"])


@pytest.mark.slow
def test_ddp_losses_and_weights_match_one_process(runs):
    single, ranks = _records(runs["single"])[0], _records(runs["ddp"])
    ddp_losses = [(a["loss"] + b["loss"]) / 2 for a, b in zip(ranks[0]["steps"], ranks[1]["steps"], strict=True)]
    single_losses = [s["loss"] for s in single["steps"]]
    assert ddp_losses == pytest.approx(single_losses, rel=1e-4, abs=1e-5)
    assert single_losses[-1] < single_losses[0]  # it trained
    # ddp_spawn hands the trained weights back to the job's process, where the stage saves them.
    one, two = torch.load(runs["single"] / "weights.pt"), torch.load(runs["ddp"] / "weights.pt")
    initial = _tiny_model().state_dict()
    assert any(not torch.equal(two[k], initial[k]) for k in two)
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.slow
def test_the_job_process_counts_every_target_token_of_the_spawned_processes(runs):
    single, ddp = (json.loads((runs[mode] / "tokens.json").read_text()) for mode in ("single", "ddp"))
    assert single == ddp == 2 * N_EXAMPLES * TARGET_LEN  # two epochs; every example has TARGET_LEN targets


@pytest.mark.slow
def test_the_sft_data_module_shards_its_batches_under_ddp(runs):
    ranks = _records(runs["ddp"])
    for a, b in zip(ranks[0]["plain"], ranks[1]["plain"], strict=True):
        assert not set(a) & set(b), "both processes train on the same examples"


@pytest.mark.slow
def test_every_process_closes_its_process_group_before_it_exits(runs):
    ranks = _records(runs["ddp"])
    assert len(ranks) == WORLD and not any(r["group_open_after_fit"] for r in ranks)


if __name__ == "__main__":
    _main(sys.argv[1], Path(sys.argv[2]))
