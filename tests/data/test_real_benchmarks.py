"""Data tier: the loaders on the full real benchmark files in ../shared/data/benchmarks (skipped where that
folder is absent). Every expected count is read from the folder's PROVENANCE.md, not written here."""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from fractions import Fraction
from pathlib import Path

import pytest

from cmt.data.answers import extract_flexible, extract_strict, is_correct, normalize_text, parse_number
from cmt.data.benchmarks import aqua, asdiv, gsm8k, gsm_hard, gsm_plus, gsm_symbolic, math500, mawps, svamp, tabmwp
from cmt.data.benchmarks.gsm_symbolic_templates import (
    VARIANT_DIRS,
    VOCABULARY,
    load_templates,
    parse_template,
    sample_problems,
)
from cmt.data.benchmarks.template_expr import TemplateExprError, evaluate, functions

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "benchmarks"
pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason=f"real benchmark data not present at {DATA}")


def documented(folder: str, pattern: str) -> int:
    """The number ``pattern``'s group captures in ``<folder>/PROVENANCE.md``."""
    text = (DATA / folder / "PROVENANCE.md").read_text(encoding="utf-8")
    match = re.search(pattern, text, re.DOTALL)
    assert match, f"{folder}/PROVENANCE.md has no match for {pattern!r}"
    return int(match.group(1))


def load(module, file: str, split: str = "test", **options):
    return module.load(split, path=str(DATA / file), **options)


# (id, loader call, PROVENANCE folder, pattern of the documented record count)
FILES = [
    ("gsm8k test", lambda: load(gsm8k, "gsm8k/test.jsonl"), "gsm8k", r"Records: test (\d+)"),
    ("gsm8k train", lambda: load(gsm8k, "gsm8k/train.jsonl", "train"), "gsm8k", r"train (\d+) \(official"),
    ("svamp", lambda: load(svamp, "svamp/SVAMP.json", "all"), "svamp", r"official, (\d+) problems"),
    ("svamp pal", lambda: load(svamp, "svamp/pal_svamp.jsonl", "all"), "svamp", r"same (\d+) problems"),
    ("asdiv", lambda: load(asdiv, "asdiv/ASDiv.xml"), "asdiv", r"full ASDiv, (\d+) problems"),
    ("asdiv tora", lambda: load(asdiv, "asdiv/tora_asdiv_test.jsonl"), "asdiv", r"tora_asdiv_test\.jsonl` \((\d+)"),
    ("asdiv pal", lambda: load(asdiv, "asdiv/pal_asdiv.jsonl"), "asdiv", r"pal_asdiv\.jsonl` \((\d+)"),
    ("mawps", lambda: load(mawps, "mawps/tora_test.jsonl"), "mawps", r"tora_test\.jsonl` \((\d+)"),
    ("mawps singleop", lambda: load(mawps, "mawps/mawpssingleop.jsonl"), "mawps", r"mawpssingleop\.jsonl` \((\d+)\)"),
    ("multiarith", lambda: load(mawps, "multiarith/mawpsmultiarith.jsonl"), "multiarith", r"Records: (\d+)"),
    ("addsub", lambda: load(mawps, "addsub/mawpsaddsub.jsonl"), "addsub", r"Records: (\d+)"),
    ("singleeq", lambda: load(mawps, "singleeq/mawpssingleeq.jsonl"), "singleeq", r"Records: (\d+)"),
    ("gsm_hard", lambda: load(gsm_hard, "gsm_hard/gsmhardv2.jsonl"), "gsm_hard", r"Records: (\d+)"),
    ("tabmwp test1k", lambda: load(tabmwp, "tabmwp/problems_test1k.json", "test1k"), "tabmwp",
     r"problems_test1k\.json`: (\d+) problems"),
    ("tabmwp dev1k", lambda: load(tabmwp, "tabmwp/problems_dev1k.json", "dev1k"), "tabmwp",
     r"problems_dev1k\.json`: (\d+) dev problems"),
    ("gsm_symbolic p2", lambda: load(gsm_symbolic, "gsm_symbolic/GSM_p2.jsonl", "p2"), "gsm_symbolic",
     r"GSM_p2\.jsonl`: (\d+) records"),
    ("gsm_plus", lambda: load(gsm_plus, "gsm_plus/gsmplus_testmini.jsonl", "testmini"), "gsm_plus", r"Records: (\d+)"),
    ("aqua test", lambda: load(aqua, "aqua/test.json"), "aqua", r"`test\.json` <- `test\.json` \((\d+)"),
    ("aqua dev", lambda: load(aqua, "aqua/dev.json", "dev"), "aqua", r"`dev\.json` <- `dev\.json` \((\d+)"),
    ("math500", lambda: load(math500, "math500/test.jsonl"), "math500", r"Records: (\d+)"),
]
_CACHE: dict[str, list] = {}


def problems_of(name: str) -> list:
    if name not in _CACHE:
        _CACHE[name] = next(loader for key, loader, _, _ in FILES if key == name)()
    return _CACHE[name]


@pytest.mark.parametrize("name, folder, pattern", [(n, f, p) for n, _, f, p in FILES])
def test_loader_returns_the_documented_record_count(name, folder, pattern):
    assert len(problems_of(name)) == documented(folder, pattern)


@pytest.mark.parametrize("name", [n for n, *_ in FILES])
def test_every_gold_answer_parses_and_ids_are_unique(name):
    problems = problems_of(name)
    assert len({p.id for p in problems}) == len(problems)
    for problem in problems:
        kind = problem.meta.get("answer_type", "number")
        if kind in ("number", "fraction"):
            number = parse_number(problem.gold)
            assert number is not None, (problem.id, problem.gold)
            assert is_correct(number.canonical(), problem.gold, kind), (problem.id, problem.gold)
        elif kind == "choice":
            choices = problem.meta["choices"]
            assert problem.gold in choices or problem.gold in "ABCDE"[:len(choices)], problem.id
            assert is_correct(problem.gold, problem.gold, kind, choices=choices)
        else:
            assert normalize_text(problem.gold) or kind == "latex", (problem.id, problem.gold)
            assert is_correct(problem.gold, problem.gold, kind), (problem.id, problem.gold)


@pytest.mark.parametrize("split", ["test", "train"])
def test_gsm8k_gold_solutions_score_100_percent_as_model_output(split):
    problems = problems_of(f"gsm8k {split}")
    raw = [json.loads(line) for line in (DATA / "gsm8k" / f"{split}.jsonl").read_text().splitlines() if line.strip()]
    failures = [(p.id, p.gold) for p, record in zip(problems, raw, strict=True)
                if not (is_correct(extract_strict(record["answer"]), p.gold)
                        and is_correct(extract_flexible(record["answer"]), p.gold)
                        and is_correct(extract_strict(p.meta["solution"]), p.gold))]
    assert failures == []


def test_gsm8k_negative_golds_and_integer_golds():
    problems = problems_of("gsm8k test") + problems_of("gsm8k train")
    assert sum(p.gold.startswith("-") for p in problems) == documented("gsm8k", r"(\d+) are negative")
    assert all(re.fullmatch(r"-?\d+", p.gold) for p in problems)


@pytest.mark.parametrize("name", ["gsm_plus", "gsm_symbolic p2"])
def test_reference_solutions_score_100_percent_as_model_output(name):
    problems = problems_of(name)
    kinds = Counter()
    for p in problems:
        kind = p.meta.get("answer_type", "number")
        kinds[kind] += is_correct(extract_strict(p.meta["solution"], kind), p.gold, kind)
    assert sum(kinds.values()) == len(problems), kinds


def test_math500_boxed_solutions_match_the_answer_field():
    problems = problems_of("math500")
    assert all(is_correct(extract_strict(p.meta["solution"], "latex"), p.gold, "latex") for p in problems)


def test_documented_answer_kinds():
    hard = problems_of("gsm_hard")
    assert sum(parse_number(p.gold).value.denominator != 1 for p in hard) == \
        documented("gsm_hard", r"\((\d+) of \d+ are non-integers")
    plus = problems_of("gsm_plus")
    assert sum(p.gold == "None" and p.meta["answer_type"] == "text" for p in plus) == \
        documented("gsm_plus", r'for all (\d+) "critical thinking"')
    tab = problems_of("tabmwp test1k")
    assert sum(p.meta["answer_type"] == "choice" for p in tab) == documented("tabmwp", r"`multi_choice` (\d+)")
    assert sum(p.meta["answer_type"] == "fraction" for p in tab) == \
        documented("tabmwp", r"(\d+) decimal_number answers in test1k are fractions")
    official = problems_of("asdiv")
    assert sum(not re.match(r"\d", p.meta["raw_answer"]) for p in official) == \
        documented("asdiv", r"(\d+) answers do not start with a number")


def test_mawps_subset_counts():
    for subset in ("singleeq", "singleop", "addsub", "multiarith"):
        assert len(load(mawps, "mawps/tora_test.jsonl", subset=subset)) == documented("mawps", rf"{subset} (\d+)")
    single = [p.question for p in load(mawps, "multiarith/mawpsmultiarith.jsonl")]
    tagged = [p.question for p in load(mawps, "mawps/tora_test.jsonl", subset="multiarith")]
    assert single == tagged


# --- GSM-Symbolic templates -------------------------------------------------------------------------------

TEMPLATES = DATA / "gsm_symbolic" / "templates"


@pytest.mark.parametrize("variant, pattern", [("main", r"templates/symbolic/0000\.\.0099\.json` \((\d+)\)"),
                                              ("p1", r"templates/p1/0000\.\.0099\.json` \((\d+)\)"),
                                              ("p2", r"templates/p2/0000\.\.0049\.json` \((\d+)\)")])
def test_all_templates_parse(variant, pattern):
    assert len(load_templates(TEMPLATES / VARIANT_DIRS[variant])) == documented("gsm_symbolic", pattern)


def _defaults(question: str) -> dict:
    """The default value of each ``{var,default}`` slot, numbers parsed."""
    values = {}
    for var, default in re.findall(r"\{\s*([A-Za-z_]\w*)\s*,\s*([^{}]*?)\s*\}", question):
        text = default.replace(",", "")
        values.setdefault(var, Fraction(text) if re.fullmatch(r"-?\d*\.?\d+(?:/\d+)?", text) else default)
    return {k: int(v) if isinstance(v, Fraction) and v.denominator == 1 else v for k, v in values.items()}


def test_evaluator_reproduces_gsm8k_answers_from_template_defaults():
    """With each slot at its default value, a main template is the original GSM8K problem, so its #answer
    expression must give the original answer: a check of the evaluator's arithmetic semantics."""
    matched, evaluated = 0, 0
    for file in sorted((TEMPLATES / "symbolic").glob("*.json")):
        data = json.loads(file.read_text())
        template = parse_template(data, file.stem)
        names = {**VOCABULARY, **_defaults(data["question_annotated"].split("#init")[0])}
        try:
            value = evaluate(template.answer, names, functions(random.Random(0)))
        except TemplateExprError:
            continue  # a default written as words ("half") or a name the answer uses but no slot sets
        if isinstance(value, (str, bool)):
            continue  # string arithmetic on a worded default ("twice" * 3)
        evaluated += 1
        matched += abs(Fraction(value) - Fraction(data["answer"].rsplit("####", 1)[1].strip().replace(",", ""))) < 1e-6
    assert evaluated >= 50 and matched >= 0.95 * evaluated, (matched, evaluated)


@pytest.mark.parametrize("variant", list(VARIANT_DIRS))
def test_most_templates_yield_valid_instances(variant):
    templates = load_templates(TEMPLATES / VARIANT_DIRS[variant])
    problems, skipped = sample_problems(templates, variant, None, instances_per_template=1)
    assert len(problems) + len(skipped) == len(templates) and len(skipped) <= 0.1 * len(templates), skipped
    for problem in problems:
        assert "{" not in problem.question and "#init" not in problem.question
        assert parse_number(problem.gold) is not None
        assert is_correct(extract_strict(problem.meta["solution"]), problem.gold)
