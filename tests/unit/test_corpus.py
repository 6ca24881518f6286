"""The tiny model's pretraining corpus: arithmetic and stories, never the solution format, and the same
documents for the same seed (the pretraining recipe depends on it)."""

import re

from cmt.data.corpus import documents

# The quantity a story ends with, in any of the phrasings `_story` uses (a story whose events were all
# skipped ends with its first sentence).
FINAL = re.compile(r"(?:(?:Now|In the end,|After that,) )?\w+ has \d+ \w+(?: in total| left)?\.$")


def test_corpus_never_teaches_the_solution_format():
    for doc in documents(3000, seed=5):
        assert "Question:" not in doc and "Answer:" not in doc and "The answer is" not in doc, doc
        assert "How many" not in doc, doc


def test_stories_end_with_the_quantity_and_mixes_follow_the_fractions():
    docs = documents(3000, seed=5, drill_fraction=0.5, words_fraction=0.2)
    drills = [d for d in docs if re.fullmatch(r"(?:\d+ [-+*] \d+ = -?\d+\.\s?)+", d)]
    stories = [d for d in docs if FINAL.search(d)]
    assert 0.45 < len(drills) / len(docs) < 0.55
    assert 0.25 < len(stories) / len(docs) < 0.35
    assert len(drills) + len(stories) < len(docs)  # the rest: arithmetic in words
    assert all(FINAL.search(d) for d in documents(500, seed=5, drill_fraction=0.0, words_fraction=0.0))


def test_corpus_is_deterministic_in_its_seed():
    assert documents(300, seed=1) == documents(300, seed=1)
    assert documents(300, seed=1) != documents(300, seed=2)
