"""Teachers write the training traces: ``comt`` (number-free meta-thoughts) and ``cot`` (worked solutions).

``conf/teacher/*.yaml`` build a teacher with ``_target_``; every teacher has a ``name`` (it names the
training-set folder and the result rows). There are two kinds:

- A *trace teacher* writes traces itself: ``write(problems, kind) -> list[str | None]`` (None: no trace
  for that problem). `cmt.teachers.rule.RuleTeacher` is one: it reads the synthetic problem's program.
- A *chat teacher* (`cmt.teachers.chat.ChatTeacher`) answers chat prompts: an LLM behind an
  OpenAI-compatible server (`cmt.teachers.openai`) or a local transformers model (`cmt.teachers.hf`).
  ``stage=teach`` renders the prompts (`cmt.teachers.prompts`), serves what it can from the on-disk
  cache (`cmt.teachers.cache`), asks the teacher for the rest (`cmt.teachers.collect`), and filters the
  answers (`cmt.teachers.filters`).

The outputs of both kinds pass the same filters, so a training set says the same thing whoever wrote it.
"""

KINDS = ("comt", "cot")
