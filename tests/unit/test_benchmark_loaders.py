"""Benchmark loaders on hand-written fixtures in each official format (tests/fixtures/benchmarks), the shared
source module (local files, data folder, hub errors, malformed files) and GSM-Symbolic's template sampler
with its safe expression evaluator."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from cmt.data.answers import is_correct, parse_number
from cmt.data.benchmarks import aqua, asdiv, gsm8k, gsm_hard, gsm_plus, gsm_symbolic, math500, mawps, svamp, tabmwp
from cmt.data.benchmarks.gsm_symbolic_templates import load_templates, parse_template, sample_problems
from cmt.data.benchmarks.source import BenchmarkSourceError, read_file, records, take
from cmt.data.benchmarks.template_expr import TemplateExprError, UnsupportedExpression, Worded, evaluate, functions

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "benchmarks"
MALFORMED = FIXTURES / "malformed"


def local(module, split, files, **options):
    """``module.load`` reading the fixtures folder as ``paths.data_dir``."""
    return module.load(split, data_dir=str(FIXTURES), files=files, **options)


# --- one loader per benchmark -----------------------------------------------------------------------------

def test_gsm8k_gold_after_the_last_marker_and_annotations_as_intermediate_values():
    problems = local(gsm8k, "test", {"test": "gsm8k/test.jsonl"})
    assert [p.gold for p in problems] == ["18", "2500", "-5"]
    assert problems[0].intermediate == [48.0, 18.0]
    assert problems[2].intermediate == [-5.0]
    assert "<<" not in problems[0].meta["solution"] and "48 muffins" in problems[0].meta["solution"]
    assert problems[0].question.startswith("Lena bakes") and problems[0].id == "test-00000"
    train = local(gsm8k, "train", {"train": "gsm8k/train.jsonl"})
    assert [p.gold for p in train] == ["23", "4.5"] and train[1].intermediate == [4.5]


def test_svamp_official_and_pal_formats():
    problems = local(svamp, "all", {"all": "svamp/SVAMP.json"})
    assert [p.id for p in problems] == ["chal-901", "chal-902", "chal-903"]
    assert problems[0].question == ("Rosa has 14 shells. She finds 9 more on the beach. "
                                    "How many shells does Rosa have now?")
    assert [p.gold for p in problems] == ["23", "4.5", "29"]
    assert problems[1].meta["type"] == "Common-Division"
    pal = svamp.load("test", path=str(FIXTURES / "svamp" / "pal_svamp.jsonl"))
    assert [p.question for p in pal] == [p.question for p in problems[:2]] and [p.gold for p in pal] == ["23", "4.5"]


def test_asdiv_units_dropped_and_non_numeric_answers_typed_as_text():
    problems = local(asdiv, "test", {"test": "asdiv/ASDiv.xml"})
    assert [(p.gold, p.meta["answer_type"]) for p in problems] == [
        ("13", "number"), ("10; 20", "text"), ("3:4", "text"), ("Ada", "text"), ("-1/3", "number")]
    assert problems[0].id == "nluds-9001" and problems[0].meta["formula"] == "9+4=13"
    assert problems[0].question == ("Nine blue kites and four red kites fly over the park. "
                                    "How many kites fly over the park?")
    tora = asdiv.load("test", path=str(FIXTURES / "asdiv" / "tora_asdiv_test.jsonl"))
    assert [(p.gold, p.meta["answer_type"]) for p in tora] == [("13", "number"), ("Ada", "text")]
    pal = asdiv.load("test", path=str(FIXTURES / "asdiv" / "pal_asdiv.jsonl"))
    assert [p.gold for p in pal] == ["13", "12"]


def test_mawps_subsets_from_the_tagged_file_and_from_their_own_files():
    everything = local(mawps, "test", {"test": "mawps/tora_test.jsonl"})
    assert [p.meta["subset"] for p in everything] == ["singleeq", "singleop", "addsub", "multiarith"]
    assert [p.gold for p in everything] == ["17", "42", "5.75", "18"]
    only = local(mawps, "test", {"test": "mawps/tora_test.jsonl"}, subset="multiarith")
    assert [p.id for p in only] == ["multiarith-3"]
    own = local(mawps, "test", {"test": "multiarith/mawpsmultiarith.jsonl"}, subset="multiarith")
    assert [p.gold for p in own] == ["18", "23", "33"]
    assert len(local(mawps, "test", {"test": "addsub/mawpsaddsub.jsonl"}, subset="addsub")) == 2
    assert len(local(mawps, "test", {"test": "singleeq/mawpssingleeq.jsonl"}, subset="singleeq")) == 2
    with pytest.raises(ValueError, match="subset"):
        local(mawps, "test", {"test": "mawps/tora_test.jsonl"}, subset="multi")


def test_gsm_hard_keeps_float_golds_and_code_as_data():
    problems = local(gsm_hard, "test", {"test": "gsm_hard/gsmhardv2.jsonl"})
    assert [p.gold for p in problems] == ["4938238", "333334.3333333333", "-2499983"]
    assert problems[1].meta["code"].startswith("def solution")
    assert is_correct("333334.33", problems[1].gold) and not is_correct("333334", problems[1].gold)


def test_tabmwp_renders_the_table_and_types_each_answer():
    problems = {p.id: p for p in local(tabmwp, "test1k", {"test1k": "tabmwp/problems_test1k.json"})}
    assert list(problems) == ["101", "102", "103", "104"]
    first = problems["101"]
    assert first.question.startswith("Table: Stamp collections\nName | Stamps\nIvy | 415")
    assert first.question.endswith("How many stamps do the three friends have in all?")
    assert (first.gold, first.meta["answer_type"]) == ("1,245", "number")
    assert (problems["102"].gold, problems["102"].meta["answer_type"]) == ("3/8", "fraction")
    choice = problems["103"]
    assert choice.meta["answer_type"] == "choice" and choice.meta["choices"] == ["shortage", "surplus"]
    assert choice.question.endswith("Options: (A) shortage (B) surplus") and choice.question.startswith("Table:\n")
    assert "(Unit: $)" in problems["104"].question
    assert is_correct("B", choice.gold, "choice", choices=choice.meta["choices"])
    assert is_correct("1245", first.gold) and is_correct("0.375", problems["102"].gold, "fraction")
    dev = local(tabmwp, "dev1k", {"dev1k": "tabmwp/problems_dev1k.json"})
    assert dev[0].gold == "music class" and "(C) dance class" in dev[0].question


def test_gsm_plus_marks_the_unanswerable_items_as_text():
    problems = local(gsm_plus, "testmini", {"testmini": "gsm_plus/gsmplus_testmini.jsonl"})
    assert [(p.gold, p.meta["answer_type"]) for p in problems] == [
        ("3.33", "number"), ("1/4", "number"), ("None", "text")]
    assert problems[2].meta["perturbation_type"] == "critical thinking"


def test_aqua_letters_and_option_texts():
    problems = local(aqua, "test", {"test": "aqua/test.json", "dev": "aqua/dev.json"})
    assert [p.gold for p in problems] == ["C", "C"]
    assert problems[0].question.endswith("Answer Choices: (A) 40 (B) 50 (C) 60 (D) 70 (E) 80")
    assert problems[1].meta["choices"][-1] == "None of these"
    assert local(aqua, "dev", {"dev": "aqua/dev.json"})[0].gold == "D"


def test_math500_latex_answers():
    problems = local(math500, "test", {"test": "math500/test.jsonl"})
    assert [(p.id, p.gold) for p in problems] == [("test/prealgebra/9001.json", "\\frac{17}{12}"),
                                                  ("test/algebra/9002.json", "3\\sqrt{2}")]
    assert all(p.meta["answer_type"] == "latex" for p in problems)


def test_math_records_without_an_answer_field_take_the_last_box(tmp_path):
    file = tmp_path / "math.jsonl"
    file.write_text('{"problem": "p", "solution": "so \\\\boxed{\\\\frac{1}{2}} and finally \\\\boxed{5}", "idx": 3}\n')
    assert math500.load("test", path=str(file))[0].gold == "5"


def test_gsm_symbolic_released_instances():
    problems = local(gsm_symbolic, "p2", {"p2": "gsm_symbolic/GSM_p2.jsonl"})
    assert [(p.id, p.gold) for p in problems] == [("p2-0-0", "75"), ("p2-0-1", "11.5")]
    assert problems[0].meta["original_id"] == 12 and "canary" not in problems[0].meta


def test_gsm_symbolic_missing_release_points_to_the_sampled_split():
    files = {"main": "gsm_symbolic/GSM_symbolic.jsonl", "p2": "gsm_symbolic/GSM_p2.jsonl"}
    with pytest.raises(BenchmarkSourceError, match="sampled_main"):
        local(gsm_symbolic, "main", files)
    with pytest.raises(BenchmarkSourceError, match="unknown split"):
        local(gsm_symbolic, "p3", files)


def test_gsm_symbolic_sampled_split_is_seeded_and_self_consistent():
    first = local(gsm_symbolic, "sampled_main", {}, instances_per_template=4)
    again = local(gsm_symbolic, "sampled_main", {}, instances_per_template=4)
    other = local(gsm_symbolic, "sampled_main", {}, instances_per_template=4, template_seed=1)
    assert len(first) == 4  # the fixture's second template is unsafe and skipped
    assert [(p.question, p.gold) for p in first] == [(p.question, p.gold) for p in again]
    assert [p.question for p in first] != [p.question for p in other]
    for problem in first:
        k, n = map(int, problem.meta["solution"].split(" has ")[1].split(" = ")[0].split(" * "))
        assert problem.gold == str(k * n) and problem.intermediate == [float(k * n)]
        assert f"fills {k} crates with {n} " in problem.question and "{" not in problem.question
    assert len(local(gsm_symbolic, "sampled_main", {}, n=2)) == 2


def test_gsm_symbolic_worded_and_fraction_values_render_as_words_and_compute_as_numbers():
    for problem in local(gsm_symbolic, "sampled_p1", {}, instances_per_template=3):
        word = problem.question.split("Then ")[1].split(" of the")[0]
        assert word in ("half", "third", "quarter", "fifth", "tenth")
        assert problem.gold == problem.meta["solution"].rsplit("#### ", 1)[1]
    for problem in local(gsm_symbolic, "sampled_p2", {}, instances_per_template=3):
        fraction = problem.question.split("Then ")[1].split(" of the")[0]
        assert parse_number(fraction).decimals == -1  # rendered as a/b


def test_gsm_symbolic_sampling_needs_the_templates():
    with pytest.raises(BenchmarkSourceError, match="templates"):
        gsm_symbolic.load("sampled_main")


def test_unsafe_template_is_skipped_with_its_reason():
    templates = load_templates(FIXTURES / "gsm_symbolic" / "templates" / "symbolic")
    problems, skipped = sample_problems(templates, "main", None, instances_per_template=2)
    assert list(skipped) == ["symbolic/0001"] and "unsupported" in skipped["symbolic/0001"]
    assert {p.meta["template"] for p in problems} == {"symbolic/0000"}


def test_template_without_a_valid_draw_is_reported():
    template = parse_template({"question_annotated": "{n,2} pens.\n#init:\n- $n = range(1, 5)\n#conditions:\n- n > 9\n"
                                                     "#answer: n", "answer_annotated": "#### {n}"}, "x/0000")
    assert sample_problems([template], "main", None, instances_per_template=1, max_attempts=20)[1] == \
        {"x/0000": "no valid draw in 20 attempts"}


def test_template_parsing_reads_every_section():
    annotated = ("{a,1} and {b,2}\n\n#init:\n- $a = range(1, 3)\n- x, y = sample(names, 2)\n"
                 "#conditions:\n- a > 0\n\n#answer: $a * 2")
    template = parse_template({"question_annotated": annotated, "answer_annotated": "#### {a*2}", "id_orig": 5}, "t/1")
    assert template.init == ((( ("a", True),), "range(1, 3)"), ((("x", False), ("y", False)), "sample(names, 2)"))
    assert template.conditions == ("a > 0",) and template.answer == "a * 2" and template.original_id == 5
    with pytest.raises(BenchmarkSourceError, match="#init"):
        parse_template({"question_annotated": "q\n#init:\n- 3 = x\n", "answer_annotated": ""}, "t/2")


# --- the safe evaluator -----------------------------------------------------------------------------------

def run(expression, **names):
    return evaluate(expression, names, functions(random.Random(0)))


@pytest.mark.parametrize("expression, expected", [
    ("int((k * y) / (x * 12) * 100)", 10), ("divides(x * 12, k * y)", True), ("is_int(k / 4)", False),
    ("k * y < x * 12 and not k > 3", True), ("1 < k < 3", True), ("[1, 2, 3][-1]", 3), ("'abc'[1:]", "bc"),
    ("Fraction(1, 3) * 3", 1), ("round(2.345, 2)", 2.35), ("k if k > 5 else y", 6), ("2 ** 10", 1024),
    ("mult * 3", 6), ("mult[0]", "twice"), ("len(list(range(2, 9)))", 7), ("numbers_within(2, 4)", range(2, 5)),
])
def test_evaluator_computes_template_expressions(expression, expected):
    assert run(expression, k=2, y=6, x=10, mult=Worded("twice", 2)) == expected


@pytest.mark.parametrize("expression", [
    "__import__('os').system('true')", "().__class__", "open('/etc/passwd')", "eval('1')", "exec('x=1')",
    "(lambda: 1)()", "[i for i in range(3)]", "k.real", "sample(names, k=2)", "2 ** 1000", "10 ** 40",
    "'a' * 10 ** 6", "[0] * 10 ** 6", "1 / 0", "x", "{1: 2}", "f'{k}'", "k := 3", "1" * 3000,
])
def test_evaluator_refuses_everything_else(expression):
    with pytest.raises(TemplateExprError):
        run(expression, k=2, names=["A", "B"])


@pytest.mark.parametrize("expression, reason", [
    ("round(5, -100)", "round's digits out of bounds"), ("round(Fraction(1, 3), 100)", "round's digits"),
    ("Fraction('1e400')", "exponent out of bounds"), ("Fraction('3E-400')", "exponent out of bounds"),
    # Without the bounds each of these runs for hours: Python builds the power of ten before rounding.
    ("round(5, -10 ** 9)", "round's digits"), ("Fraction('1e99999999')", "exponent out of bounds"),
])
def test_arguments_that_would_build_a_huge_number_are_refused_before_the_call(expression, reason):
    with pytest.raises(TemplateExprError, match=reason):
        run(expression)


def test_structural_errors_skip_a_template_and_value_errors_redraw():
    with pytest.raises(UnsupportedExpression):
        run("open('x')")
    with pytest.raises(TemplateExprError) as error:
        run("k / (k - 2)", k=2)
    assert not isinstance(error.value, UnsupportedExpression)


def test_evaluator_sampling_is_reproducible():
    names = {"people": ["A", "B", "C", "D"]}
    draws = [evaluate("sample(people, 2) + [sample(range(100))]", names, functions(random.Random(7))) for _ in range(2)]
    assert draws[0] == draws[1] and len(set(draws[0][:2])) == 2


# --- the shared source ------------------------------------------------------------------------------------

def test_path_with_split_placeholder_serves_every_split():
    path = str(FIXTURES / "gsm8k" / "{split}.jsonl")
    assert len(gsm8k.load("train", path=path)) == 2 and len(gsm8k.load("test", path=path)) == 3


@pytest.mark.parametrize("file, where", [("bad.jsonl", "bad.jsonl:3"), ("bad.json", "bad.json:3"),
                                         ("bad.xml", "bad.xml:5")])
def test_malformed_file_names_file_and_line(file, where):
    with pytest.raises(BenchmarkSourceError, match=where.replace(".", r"\.")):
        read_file(MALFORMED / file)


def test_missing_field_names_the_record_and_the_override():
    with pytest.raises(BenchmarkSourceError, match=r"missing_field\.jsonl:1: no field 'answer'.*fields\.answer"):
        gsm8k.load("test", path=str(MALFORMED / "missing_field.jsonl"))


def test_gold_without_marker_is_an_error():
    with pytest.raises(BenchmarkSourceError, match=r"no_marker\.jsonl:1.*####"):
        gsm8k.load("test", path=str(MALFORMED / "no_marker.jsonl"))


def test_field_mapping_reads_renamed_copies(tmp_path):
    file = tmp_path / "renamed.jsonl"
    file.write_text('{"problem": "What is 2 + 2?", "worked": "2 + 2 = <<2+2=4>>4\\n#### 4"}\n')
    problems = gsm8k.load("test", path=str(file), fields={"question": "problem", "answer": "worked"})
    assert (problems[0].question, problems[0].gold) == ("What is 2 + 2?", "4")


def test_unknown_format_and_missing_file(tmp_path):
    (tmp_path / "data.csv").write_text("a,b\n")
    with pytest.raises(BenchmarkSourceError, match="unknown benchmark file format"):
        read_file(tmp_path / "data.csv")
    with pytest.raises(BenchmarkSourceError, match="not found"):
        read_file(tmp_path / "absent.jsonl")


def test_data_dir_without_the_split_lists_the_local_ones():
    with pytest.raises(BenchmarkSourceError, match=r"problems_test\.json not found.*local files: test1k, dev1k"):
        local(tabmwp, "test", {"test1k": "tabmwp/problems_test1k.json", "dev1k": "tabmwp/problems_dev1k.json",
                               "test": "tabmwp/problems_test.json"})


def test_unreachable_hub_is_one_line_naming_the_local_overrides(monkeypatch):
    datasets = pytest.importorskip("datasets")
    import huggingface_hub.constants

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(BenchmarkSourceError) as error:
        gsm8k.load("test", hub={"id": "openai/gsm8k", "config": "main", "splits": {"test": "test"}})
    message = str(error.value)
    assert "\n" not in message and "openai/gsm8k" in message
    assert "benchmark.path=" in message and "paths.data_dir=" in message


def test_split_without_hub_source():
    with pytest.raises(BenchmarkSourceError, match="no hub source.*paths.data_dir="):
        records("mawps", "test", hub={"id": None, "splits": {}})


def test_take_draws_a_seeded_ordered_subset():
    items = list(range(100))
    subset = take(items, 10, seed=3)
    assert subset == sorted(subset) and len(set(subset)) == 10 and subset == take(items, 10, seed=3)
    assert subset != take(items, 10, seed=4)
    assert take(items, None) == items and take(items, 1000) == items and take(items, 0) == []
    with pytest.raises(ValueError):
        take(items, -1)
