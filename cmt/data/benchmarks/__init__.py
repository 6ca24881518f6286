"""Real math word-problem benchmarks: one small loader module per benchmark, sharing one source module.

Every loader has the signature ``load(split, n=None, **options) -> list[Problem]`` that
``conf/benchmark/<name>.yaml`` binds as a Hydra partial (see :mod:`cmt.data.suite`). Records come from
the Hugging Face hub by default, or from local files (``benchmark.path=...``, ``paths.data_dir=...``):
:mod:`cmt.data.benchmarks.source`. Gold answers are parsed strictly (:mod:`cmt.data.benchmarks.gold`) and
checked with :mod:`cmt.data.answers`. Sources, record counts and subsets: ``docs/benchmarks.md``.

- :mod:`.gsm8k` (train + test, with calculator annotations as intermediate values)
- :mod:`.svamp`, :mod:`.asdiv`, :mod:`.mawps` (MAWPS and its AddSub, SingleEq, SingleOp, MultiArith subsets)
- :mod:`.gsm_hard`, :mod:`.gsm_plus`, :mod:`.gsm_symbolic` (released sets, and variants sampled from the
  templates by :mod:`.gsm_symbolic_templates` with the safe evaluator :mod:`.template_expr`)
- :mod:`.tabmwp` (tables rendered into the question), :mod:`.aqua` (multiple choice), :mod:`.math500` (LaTeX)
"""
