"""Do two evaluators read the same answers from the same generations?

lm-evaluation-harness's gsm8k task extracts with regular expressions (``strict-match``: the number after
``####``; ``flexible-extract``: the last number-like match) and compares after stripping commas, ``$`` and
a final period; `cmt.data.answers` parses numbers (answer sentence first, else the last number). These
helpers line the two up per problem, on lm-eval's own responses, so a disagreement is about extraction
and not about generation.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

# lm-eval gsm8k's metric settings (regexes_to_ignore) and stop sequences (generation_kwargs.until).
PEER_IGNORE = (",", r"\$", r"(?s).*#### ", r"\.$")
PEER_STOPS = ("Question:", "</s>", "<|im_end|>")
INVALID = "[invalid]"


def peer_value(extracted: str | None) -> str | None:
    """lm-eval's extracted string as its metric sees it (ignored patterns removed); None for no answer."""
    if extracted is None or extracted == INVALID:
        return None
    for pattern in PEER_IGNORE:
        extracted = re.sub(pattern, "", extracted)
    return extracted.strip() or None


def same_answer(ours: str | None, peer: str | None) -> bool:
    """Equal answers: both missing, or equal as numbers (else as stripped lowercase text)."""
    if ours is None or peer is None:
        return ours is None and peer is None
    try:
        a, b = float(str(ours).replace(",", "")), float(str(peer).replace(",", ""))
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    except ValueError:
        return str(ours).strip().lower() == str(peer).strip().lower()


def cut_at_stops(text: str, stops: Sequence[str] = PEER_STOPS) -> str:
    """``text`` up to the first stop sequence (what lm-eval keeps of a generation)."""
    cut = len(text)
    for stop in stops:
        index = text.find(stop)
        if index >= 0:
            cut = min(cut, index)
    return text[:cut]


def same_text_rate(ours: Sequence[str], peer: Sequence[str]) -> float:
    """The fraction of positions where the two texts are equal character for character (prompts).

    Raises:
        ValueError: The sequences have different lengths or are empty.
    """
    if not ours or len(ours) != len(peer):
        raise ValueError(f"need as many non-zero texts on each side, got {len(ours)} and {len(peer)}")
    return sum(a == b for a, b in zip(ours, peer, strict=True)) / len(ours)


def compare(our_texts: Sequence[str], peer_raw: Sequence[str], peer_flexible: Sequence[str | None],
            peer_strict: Sequence[str | None]) -> dict[str, float]:
    """Agreement rates over problems (all in [0, 1]).

    Args:
        our_texts: Our evaluator's completion of each problem.
        peer_raw: lm-eval's response to the same problem (already cut at its stop sequences).
        peer_flexible, peer_strict: lm-eval's ``flexible-extract`` and ``strict-match`` outputs.

    Returns:
        ``generation_match``: our completion, cut where lm-eval stops, equals lm-eval's response;
        ``answer_agreement_flexible`` / ``answer_agreement_strict``: on lm-eval's responses, our flexible
        (strict) extraction gives the same answer as lm-eval's flexible-extract (strict-match) filter;
        ``peer_answered``: lm-eval's flexible-extract found an answer at all (how much the rates rest on).

    Raises:
        ValueError: The sequences have different lengths or are empty.
    """
    from cmt.data.answers import extract_flexible, extract_strict

    n = len(our_texts)
    if n == 0 or not n == len(peer_raw) == len(peer_flexible) == len(peer_strict):
        raise ValueError(f"need as many non-zero answers on each side, got {n}, {len(peer_raw)}, "
                         f"{len(peer_flexible)}, {len(peer_strict)}")
    generation = sum(cut_at_stops(o).strip() == p.strip() for o, p in zip(our_texts, peer_raw, strict=True))
    flexible = sum(same_answer(extract_flexible(p), peer_value(f))
                   for p, f in zip(peer_raw, peer_flexible, strict=True))
    strict = sum(same_answer(extract_strict(p), peer_value(s)) for p, s in zip(peer_raw, peer_strict, strict=True))
    answered = sum(peer_value(f) is not None for f in peer_flexible)
    return {"generation_match": generation / n, "answer_agreement_flexible": flexible / n,
            "answer_agreement_strict": strict / n, "peer_answered": answered / n}
