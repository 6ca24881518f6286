"""Which questions RL trains and validates on: never the ones SFT trained on (`cmt.data.suite.rl_problems`)."""

import json

import pytest

from cmt.data.suite import rl_problems, train_problems
from cmt.errors import ConfigError


def _questions(problems):
    return {p.question for p in problems}


def test_on_the_synthetic_world_rl_draws_fresh_problems_and_validates_on_others(cfg_factory):
    """With seed 0 RL used to train on exactly the teacher's 2,000 questions and validate on 64 of them."""
    cfg = cfg_factory(["teach.n=300"])
    assert cfg.benchmark.train.rl_problems == "fresh"
    teach = train_problems(cfg.benchmark, 300)
    chosen = rl_problems(cfg.benchmark, 300, n_train=400, n_val=64)
    assert (len(chosen.train), len(chosen.validation)) == (400, 64)
    taught, trained, validated = _questions(teach), _questions(chosen.train), _questions(chosen.validation)
    assert len(trained) == 400 and len(validated) == 64
    assert not taught & trained and not taught & validated and not trained & validated
    assert not {p.id for p in teach} & {p.id for p in chosen.train + chosen.validation}
    # Fresh questions of the training distribution (never the id test split), with their answer rules.
    assert {p.meta["split"] for p in chosen.train + chosen.validation} == {"train"}
    assert all(p.meta["answer_type"] == "number" and p.intermediate for p in chosen.train)
    # The same every time (a resumed or repeated run sees the same problems).
    again = rl_problems(cfg.benchmark, 300, n_train=400, n_val=64)
    assert [p.id for p in again.train] == [p.id for p in chosen.train]


@pytest.fixture
def gsm8k_like(tmp_path):
    """A local GSM8K-format train split of 40 problems."""
    rows = [{"question": f"Ann has {i} pens and buys {i + 3} more. How many pens does she have?",
             "answer": f"{i} + {i + 3} = <<{i}+{i + 3}={2 * i + 3}>>{2 * i + 3}\n#### {2 * i + 3}"} for i in range(40)]
    path = tmp_path / "gsm8k_train.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return ["benchmark=gsm8k", f"benchmark.path={path}"]


def test_on_a_fixed_dataset_both_stages_share_the_train_split_and_validation_is_held_out_of_both(cfg_factory,
                                                                                                 gsm8k_like):
    cfg = cfg_factory([*gsm8k_like, "benchmark.train.held_out=8"])
    assert cfg.benchmark.train.rl_problems == "shared"
    teach = train_problems(cfg.benchmark, None)
    chosen = rl_problems(cfg.benchmark, None, n_train=100, n_val=5)
    assert len(teach) == 32 and [p.id for p in chosen.train] == [p.id for p in teach]
    assert len(chosen.validation) == 5 and not _questions(chosen.validation) & _questions(teach)
    # teach.n draws from what is left after the held-out problems, never one of them.
    held_out = rl_problems(cfg.benchmark, None, n_train=0, n_val=8).validation
    assert len(held_out) == 8 and not _questions(held_out) & _questions(train_problems(cfg.benchmark, 20))
    # At most a fifth of a small split is held out.
    small = cfg_factory([*gsm8k_like, "benchmark.train.held_out=30"])
    assert len(train_problems(small.benchmark, None)) == 32


def test_bad_problem_sources_fail_with_one_line(cfg_factory, gsm8k_like):
    cfg = cfg_factory([*gsm8k_like, "benchmark.train.held_out=4"])
    with pytest.raises(ConfigError, match=r"^rl.val_n=5: must be at most benchmark.train.held_out=4") as error:
        rl_problems(cfg.benchmark, None, n_train=10, n_val=5)
    assert "\n" not in str(error.value)
    fresh = cfg_factory([*gsm8k_like, "benchmark.train.rl_problems=fresh"])
    with pytest.raises(ConfigError, match="rl_problems=fresh: the loader cmt.data.benchmarks.gsm8k.load reads a "
                                          "fixed dataset"):
        rl_problems(fresh.benchmark, None, n_train=10, n_val=4)
    bad = cfg_factory([*gsm8k_like, "benchmark.train.rl_problems=new"])
    with pytest.raises(ConfigError, match=r"^benchmark.train.rl_problems='new': choose one of fresh, shared$"):
        train_problems(bad.benchmark, None)
