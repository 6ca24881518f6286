"""Teachers write the training traces: ``comt`` (number-free meta-thoughts) and ``cot`` (worked solutions).

A teacher is any object with a ``name`` and ``write(problems, kind) -> list[str | None]`` (None: no trace
for that problem). ``conf/teacher/*.yaml`` build them with ``_target_``.
"""

KINDS = ("comt", "cot")
