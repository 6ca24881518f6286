"""Get an answer for every request: from the cache when it holds one, else from the teacher, cached on arrival.

This is the resume logic of ``stage=teach``: a rerun finds every answer the last run received in the
cache (`cmt.teachers.cache`) and asks the teacher only for the rest, so no question is asked twice and an
interrupted run loses nothing it received. Requests with the same key (the same question twice) are
asked once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tqdm.auto import tqdm

from cmt.teachers.cache import ResponseCache
from cmt.teachers.chat import ChatRequest, ChatResult, ChatTeacher


@dataclass
class Collected:
    """The answers of one collection.

    Attributes:
        results: ``{key: answer}`` for every request answered, from the cache or the teacher.
        failures: ``{key: why}`` for the requests the teacher could not answer.
        hits: Distinct requests served from the cache.
        asked: Distinct requests sent to the teacher.
    """

    results: dict[str, ChatResult] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    hits: int = 0
    asked: int = 0


def collect(teacher: ChatTeacher, requests: Sequence[ChatRequest], cache: ResponseCache,
            meta: Mapping[str, Mapping[str, Any]] | None = None, progress: bool = True) -> Collected:
    """Answer ``requests``, cache first.

    Args:
        teacher: Asked only for what the cache lacks (and checked first, only then).
        requests: The requests; duplicates by key are answered once.
        cache: Read for hits; every new answer is written to it the moment it arrives.
        meta: Per key, fields written beside the answer in the cache file (question id, kind).
        progress: Show a progress bar (rate and ETA) over the requests sent.

    Raises:
        TeacherError: The teacher cannot answer at all (what it answered before is cached).
    """
    out = Collected()
    missing: dict[str, ChatRequest] = {}
    for request in requests:
        if request.key in out.results or request.key in missing:
            continue
        cached = cache.get(request.key)
        if cached is None:
            missing[request.key] = request
        else:
            out.results[request.key] = ChatResult.from_json(cached)
    out.hits, out.asked = len(out.results), len(missing)
    if not missing:
        return out
    teacher.check()
    print(f"teacher {teacher.name}: {out.hits} answers cached, asking for {out.asked}")
    meta = meta or {}
    with tqdm(total=len(missing), desc=f"teacher {teacher.name}", unit="req", disable=not progress,
              dynamic_ncols=True) as bar:
        def on_result(request: ChatRequest, result: ChatResult) -> None:
            cache.put(request.key, result.to_json(), **meta.get(request.key, {}))
            out.results[request.key] = result
            bar.update()

        out.failures = teacher.complete(list(missing.values()), on_result)
    return out
