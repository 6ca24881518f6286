"""The base-model probe: its inputs put the right text between a story's events and the cue, its scoring
reads the first number, and the command runs on the bundled model."""

import pytest

from cmt.data.synthetic import generate, steps_of
from cmt.eval.probe import accuracy_by_steps, main, probe_texts, question_sentence


def test_probe_inputs_put_each_variant_between_the_events_and_the_cue():
    problem = generate("id", 1, seed=3)[0]
    person = problem.question.split()[0]
    events = probe_texts([problem], "events")[0]
    assert events.endswith(f". Now {person} has") and "?" not in events
    with_question = probe_texts([problem], "events + question")[0]
    assert with_question == events.replace(f" Now {person} has", f" {question_sentence(problem)} Now {person} has")
    assert question_sentence(problem).startswith("How many") and question_sentence(problem).endswith("?")
    with_plan = probe_texts([problem], "events + meta-thought")[0]
    assert len(with_plan) > len(events) and "The answer is" not in with_plan
    # The meta-thought states no number: the only numbers are the story's own.
    assert sorted(int(t.strip(".")) for t in with_plan.split() if t.strip(".").isdigit()) == \
        sorted(int(t.strip(".")) for t in events.split() if t.strip(".").isdigit())


def test_accuracy_reads_the_first_number_overall_and_by_program_length():
    problems = generate("id", 40, seed=3)
    # Right for every other problem: the gold answer, or the gold answer plus one, first in the text.
    texts = [f" {int(p.gold) + (i % 2)} apples, not 1000" for i, p in enumerate(problems)]
    accuracy = accuracy_by_steps(problems, texts)
    assert accuracy["all"] == 0.5
    for n in {len(steps_of(p)) for p in problems}:
        members = [i for i, p in enumerate(problems) if len(steps_of(p)) == n]
        assert accuracy[n] == sum(i % 2 == 0 for i in members) / len(members)
    assert accuracy_by_steps(problems[:1], ["no number"])["all"] == 0.0


def test_probe_command_prints_a_line_per_variant_on_the_bundled_model(capsys):
    main(["--n", "8"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split()[:2] == ["variant", "all"]
    assert [line.split("  ")[0].strip() for line in lines[1:]] == ["events", "events + question",
                                                                  "events + meta-thought"]
    assert all(line.rstrip().endswith("%") for line in lines[1:])


def test_probe_command_refuses_a_model_that_is_not_a_folder(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--model", str(tmp_path / "missing")])
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.endswith(f"--model {tmp_path / 'missing'}: not a folder; give a save_pretrained folder")
