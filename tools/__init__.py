"""Development and test tools run from a clone of the repository (not part of the installed ``cmt`` package).

- ``python -m tools.openai_server``: a small OpenAI-compatible server (a local model, or an echo) that the
  tests start on 127.0.0.1 and that lets the bundled tiny model play an OpenAI-compatible teacher.
"""
