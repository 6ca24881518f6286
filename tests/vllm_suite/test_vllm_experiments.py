"""Every shipped experiment and sweep job that generates with vLLM passes the config check once vLLM is
installed (tests/unit/test_config_validation.py checks them where it is not: the install hint)."""

from __future__ import annotations

import pytest
from hydra.core.global_hydra import GlobalHydra

from cmt.validation import validate_config
from tests.configs.test_experiments import _path, _resolved
from tests.unit.test_config_validation import FILES, _sweep_jobs, uses_vllm
from tests.vllm_suite.conftest import requires_vllm

# The files that ask for vLLM (rl.rollout or eval.backend); the test checks that their jobs do use it.
VLLM_FILES = [(group, name) for group, name in FILES if "vllm" in _path(group, name).read_text()]


@requires_vllm
@pytest.mark.parametrize(("group", "name"), VLLM_FILES, ids=[f"{g}={n}" for g, n in VLLM_FILES])
def test_vllm_jobs_pass_the_config_check(group, name):
    configs = [_resolved(tuple(job)) for job in _sweep_jobs(group, name)]
    GlobalHydra.instance().clear()
    vllm_jobs = [cfg for cfg in configs if uses_vllm(cfg)]
    assert vllm_jobs
    for cfg in vllm_jobs:
        validate_config(cfg)
