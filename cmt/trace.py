"""How a trained student generates: directly, or a plan first and then its execution (CCRL's "task adaptation").

A CoMT-SFT student writes number-free meta-thoughts and then ``The answer is N.``: it never states an
intermediate result, so CCRL's step calibration would have only the answer to judge. Under the
``plan_execute`` protocol (our reading of the paper's stage 2, docs/paper_mapping.md) it generates in two
phases:

1. **plan**: it generates as usual; the text is cut where its answer sentence starts (``plan_end``, ``The
   answer is``) or at EOS;
2. **execution**: an execution cue (``\\nExecution:``) is appended and the model continues: it carries the
   plan out with numbers and ends with the answer sentence.

In RL the execution is the completion (what the rewards judge and the policy gradient trains) and the
rendered prompt + plan + cue is its prompt; in eval the saved output is plan + cue + execution. ``direct``
is one phase, the prompt's own completion (every SFT model, and the CoT-SFT + RL baseline).

The RL stage writes the protocol beside the model it saves (``trace.json``) and ``stage=eval`` reads it, so
a method is evaluated the way it was trained. :func:`generate_traced` is the one implementation of both
phases: it takes a ``generate`` callable, so RL rollouts, eval and any other backend share it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from cmt.errors import ConfigError
from cmt.eval.evaluate import Completion
from cmt.generation import decode_with_offsets

TRACES = ("plan_execute", "direct")
PROTOCOL_FILE = "trace.json"
# prompts, completions per prompt -> completions, a prompt's one after another (greedy or sampled: the
# callable decides; both phases use it alike).
Generate = Callable[[Sequence[str], int], list[Completion]]


@dataclass(frozen=True)
class TraceProtocol:
    """How to generate (see the module docstring).

    Attributes:
        name: ``plan_execute`` or ``direct``.
        plan_end: Where a plan ends: the start of this text (matched ignoring case), else EOS.
        cue: Appended after the plan to start the execution.
    """

    name: str = "direct"
    plan_end: str = "The answer is"
    cue: str = "\nExecution:"

    @classmethod
    def from_mapping(cls, node: Mapping, where: str = "stage") -> TraceProtocol:
        """Validate ``{trace, plan_end, execution_cue}`` as they appear in a stage config node.

        Raises:
            ConfigError: One line naming the key (``<where>.trace`` ...) and what is allowed.
        """
        name = node.get("trace", "direct")
        if name not in TRACES:
            raise ConfigError(f"{where}.trace={name!r}: choose one of {', '.join(TRACES)}")
        values = {}
        for key, field in (("plan_end", "plan_end"), ("execution_cue", "cue")):
            value = node.get(key, getattr(cls, field))
            if not isinstance(value, str) or (name == "plan_execute" and not value.strip()):
                raise ConfigError(f"{where}.{key}={value!r}: must be a non-blank string (plan_execute reads it)")
            values[field] = value
        return cls(name=name, **values)

    def save(self, folder: str | Path) -> Path:
        """Write the protocol to ``<folder>/trace.json`` (beside a saved model)."""
        path = Path(folder) / PROTOCOL_FILE
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, folder: str | Path | None) -> TraceProtocol:
        """The protocol saved with a model; ``direct`` for a folder without one (or None: the base model).

        Raises:
            ValueError: The file exists but is not a protocol this version knows.
        """
        path = Path(folder) / PROTOCOL_FILE if folder is not None else None
        if path is None or not path.is_file():
            return cls()
        try:
            data = json.loads(path.read_text())
            protocol = cls(**data)
        except (ValueError, TypeError) as error:
            raise ValueError(f"{path}: not a trace protocol ({error}); delete it to generate directly") from None
        if protocol.name not in TRACES:
            raise ValueError(f"{path}: unknown trace {protocol.name!r}; choose one of {', '.join(TRACES)}")
        return protocol


@dataclass
class Traced:
    """One generation under a protocol.

    Attributes:
        prompt: The text the final phase continued: the prompt (``direct``), or prompt + plan + cue.
        plan: The plan's text ('' for ``direct``).
        plan_token_ids, plan_logprobs: The plan's generated tokens up to the cut, and their log-probs.
        completion: The final phase's completion (RL's rollout).
    """

    prompt: str
    plan: str
    plan_token_ids: list[int]
    plan_logprobs: list[float]
    completion: Completion


def cut_plan(tokenizer, token_ids: Sequence[int], plan_end: str) -> tuple[int, str]:
    """Where a generated plan ends: ``(tokens kept, plan text)``.

    The plan is cut before the token in which ``plan_end`` starts (its first occurrence, ignoring case), else
    before the first special token (EOS), else it is kept whole (cut at the length limit). Trailing whitespace
    is dropped from the text, and the tokens kept are those that lie wholly inside it.
    """
    text, offsets = decode_with_offsets(tokenizer, list(token_ids))
    special = set(tokenizer.all_special_ids)
    end = len(text)
    # Lower-cased one character per character (str.lower may lengthen a non-ASCII one), so indices match.
    marker = text.encode("ascii", "replace").decode().lower().find(plan_end.lower())
    if marker >= 0:
        end = marker
    for index, token in enumerate(token_ids):
        if token in special:
            end = min(end, offsets[index][0])
            break
    plan = text[:end].rstrip()
    kept = 0
    while kept < len(offsets) and offsets[kept][1] <= len(plan):
        kept += 1
    return kept, plan


def generate_traced(generate: Generate, tokenizer, prompts: Sequence[str], protocol: TraceProtocol,
                    num_samples: int = 1) -> list[Traced]:
    """Generate ``num_samples`` traces per prompt under ``protocol`` (a prompt's one after another).

    Args:
        generate: ``(prompts, n) -> completions`` (n per prompt, in order); called once per phase, with
            ``num_samples`` for the plan (or the direct completion) and 1 for each plan's execution.
        tokenizer: The model's tokenizer (to cut plans at token boundaries).
        prompts: Rendered prompts.
        protocol: ``direct`` or ``plan_execute``.
        num_samples: Traces per prompt.

    Returns:
        ``len(prompts) * num_samples`` traces.
    """
    first = generate(list(prompts), num_samples)
    owners = [prompts[i // num_samples] for i in range(len(first))]
    if protocol.name == "direct":
        return [Traced(prompt, "", [], [], completion) for prompt, completion in zip(owners, first, strict=True)]
    cuts = [cut_plan(tokenizer, c.token_ids, protocol.plan_end) for c in first]
    execution_prompts = [prompt + plan + protocol.cue for prompt, (_, plan) in zip(owners, cuts, strict=True)]
    second = generate(execution_prompts, 1)
    return [Traced(prompt, plan, c.token_ids[:kept], c.logprobs[:kept], completion)
            for prompt, (kept, plan), c, completion in zip(execution_prompts, cuts, first, second, strict=True)]


def as_completion(tokenizer, traced: Traced, protocol: TraceProtocol) -> Completion:
    """What eval scores and saves: the completion (``direct``), or plan + cue + execution as one completion.

    The cue's tokens are part of the output (they are in its text) with log-prob 0 (they were not sampled),
    so the output-token count includes them; answer confidence reads the execution's answer tokens.
    """
    if protocol.name == "direct":
        return traced.completion
    cue_ids = tokenizer(protocol.cue, add_special_tokens=False).input_ids
    execution = traced.completion
    return Completion(text=traced.plan + protocol.cue + execution.text,
                      token_ids=[*traced.plan_token_ids, *cue_ids, *execution.token_ids],
                      logprobs=[*traced.plan_logprobs, *([0.0] * len(cue_ids)), *execution.logprobs],
                      finished=execution.finished)
