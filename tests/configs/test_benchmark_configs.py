"""Every real-benchmark config composes from conf/ with Hydra's compose API, and its loader runs on the
hand-written fixtures (tests/fixtures/benchmarks as paths.data_dir); the paper suites compose their eight
members; a benchmark's answer rules reach scoring."""

from __future__ import annotations

from pathlib import Path

import pytest

from cmt.data.benchmarks.source import BenchmarkSourceError
from cmt.data.problem import Problem
from cmt.data.suite import eval_sets, train_problems
from cmt.eval.evaluate import Completion, score

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "benchmarks"
CONF = Path(__file__).resolve().parents[2] / "conf" / "benchmark"
PAPER = ["gsm8k", "svamp", "asdiv", "mawps", "tabmwp", "gsm_hard", "gsm_symbolic", "multiarith"]

# name -> (overrides that pick a split the fixtures have, problems per evaluated split, answer type)
BENCHMARKS = {
    "gsm8k": ([], [3], "number"),
    "svamp": (["benchmark.splits=[{split: all, tag: id}]"], [3], "number"),
    "asdiv": ([], [5], "number"),
    "mawps": ([], [4], "number"),
    "multiarith": ([], [3], "number"),
    "addsub": ([], [2], "number"),
    "singleeq": ([], [2], "number"),
    "gsm_hard": ([], [3], "number"),
    "tabmwp": (["benchmark.splits=[{split: test1k, tag: ood}, {split: dev1k, tag: ood}]"], [4, 1], "number"),
    "gsm_symbolic": (["benchmark.splits=[{split: p2, tag: ood}, {split: sampled_p1, tag: ood}]",
                      "benchmark.loader.instances_per_template=5"], [2, 5], "number"),
    "gsm_plus": ([], [3], "number"),
    "aqua": ([], [2], "choice"),
    "math500": ([], [2], "latex"),
}


def test_every_benchmark_config_is_covered():
    assert sorted(p.stem for p in CONF.glob("*.yaml")) == sorted([*BENCHMARKS, "paper", "synthetic"])


@pytest.mark.parametrize("name", list(BENCHMARKS))
def test_config_composes_and_loads_the_fixtures(cfg_factory, name):
    overrides, sizes, answer_type = BENCHMARKS[name]
    cfg = cfg_factory([f"benchmark={name}", f"paths.data_dir={FIXTURES}", *overrides])
    benchmark = cfg.benchmark
    assert benchmark.name == name and benchmark.answer_type == answer_type
    assert benchmark.loader.data_dir == str(FIXTURES) and benchmark.loader.path is None
    assert benchmark.loader.hub.splits is not None
    sets = eval_sets(benchmark, None)
    assert [len(s.problems) for s in sets] == sizes
    for eval_set in sets:
        assert eval_set.benchmark == name and eval_set.tag in ("id", "ood")
        for problem in eval_set.problems:
            assert isinstance(problem, Problem) and problem.question and problem.gold
            assert problem.meta["answer_type"] in ("number", "fraction", "text", "choice", "latex")
            if benchmark.get("tolerance"):
                assert problem.meta["rel_tol"] == benchmark.tolerance.rel


def test_path_override_reads_one_file(cfg_factory):
    cfg = cfg_factory(["benchmark=svamp", f"benchmark.path={FIXTURES / 'svamp' / 'pal_svamp.jsonl'}"])
    assert [p.gold for p in eval_sets(cfg.benchmark, None)[0].problems] == ["23", "4.5"]


def test_eval_n_draws_a_subset(cfg_factory):
    cfg = cfg_factory(["benchmark=mawps", f"paths.data_dir={FIXTURES}", "benchmark.eval_n=2"])
    assert len(eval_sets(cfg.benchmark, None)[0].problems) == 2
    assert len(eval_sets(cfg.benchmark, 3)[0].problems) == 3


@pytest.mark.parametrize("name, substitute, hint", [("tabmwp", "test1k", "local files: test1k, dev1k"),
                                                    ("gsm_symbolic", "sampled_main", "sampled_main"),
                                                    ("svamp", "all", "local files: all")])
def test_a_split_missing_locally_is_replaced_by_its_substitute_or_named_in_the_error(cfg_factory, name, substitute,
                                                                                     hint):
    overrides = [f"benchmark={name}", f"paths.data_dir={FIXTURES}", "benchmark.loader.instances_per_template=2"][
        :3 if name == "gsm_symbolic" else 2]
    [eval_set] = eval_sets(cfg_factory(overrides).benchmark, None)
    assert eval_set.split == substitute and eval_set.problems
    with pytest.raises(BenchmarkSourceError, match=hint):
        eval_sets(cfg_factory([*overrides, "~benchmark.local_substitutes"]).benchmark, None)


def test_gsm8k_is_a_training_source(cfg_factory):
    cfg = cfg_factory(["benchmark=gsm8k", f"paths.data_dir={FIXTURES}"])
    problems = train_problems(cfg.benchmark, None)
    assert [p.gold for p in problems] == ["23", "4.5"] and problems[0].intermediate == [30.0, 23.0]
    with pytest.raises(ValueError, match="no training source"):
        train_problems(cfg_factory(["benchmark=asdiv"]).benchmark, None)


def test_paper_suite_holds_the_eight_benchmarks(cfg_factory):
    benchmark = cfg_factory(["benchmark=paper"]).benchmark
    assert list(benchmark.suite) == PAPER
    assert [benchmark.suite[name].splits[0].tag for name in PAPER] == ["id", "id"] + ["ood"] * 6
    assert benchmark.suite.gsm_symbolic.splits[0].split == "main" and benchmark.suite.tabmwp.splits[0].split == "test"
    assert benchmark.suite.gsm8k.loader.hub.id == "openai/gsm8k"
    standalone = cfg_factory(["benchmark=multiarith"]).benchmark
    assert benchmark.suite.multiarith == standalone


def test_paper_suite_on_local_files_evaluates_the_local_substitutes(cfg_factory):
    cfg = cfg_factory(["benchmark=paper", f"paths.data_dir={FIXTURES}",
                       "benchmark.suite.gsm_symbolic.loader.instances_per_template=2"])
    sets = eval_sets(cfg.benchmark, None)
    assert [(s.benchmark, s.split, s.tag) for s in sets] == [
        ("gsm8k", "test", "id"), ("svamp", "all", "id"), ("asdiv", "test", "ood"), ("mawps", "test", "ood"),
        ("tabmwp", "test1k", "ood"), ("gsm_hard", "test", "ood"), ("gsm_symbolic", "sampled_main", "ood"),
        ("multiarith", "test", "ood")]
    assert [len(s.problems) for s in sets] == [3, 3, 5, 4, 4, 3, 2, 3]
    assert sets[1].split == "all"
    assert len(train_problems(cfg.benchmark, None)) == 2


def test_answer_rules_reach_scoring(cfg_factory):
    cfg = cfg_factory(["benchmark=tabmwp", f"paths.data_dir={FIXTURES}",
                       "benchmark.splits=[{split: test1k, tag: ood}]"])
    problems = eval_sets(cfg.benchmark, None)[0].problems
    outputs = ["Add them: 415 + 500 + 330. The answer is 1,245.", "6 of 16 pets. The answer is 0.375.",
               "Supply exceeds demand. The answer is (B).", "4.75 + 2.50 = 7.25"]
    scored = score(problems, [Completion(text, [], [], True) for text in outputs], tokenizer=None)
    assert [s.predicted for s in scored] == ["1245", "0.375", "B", "7.25"]
    assert [s.correct for s in scored] == [True, True, True, True]
    assert [s.correct_strict for s in scored] == [True, True, True, False]
