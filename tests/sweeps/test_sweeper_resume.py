"""A study outlives its sweeps: a killed sweep resumes, and workers started side by side share it."""

from __future__ import annotations

import signal
import time

import pytest

# Heartbeats every second; a trial silent for 2 s belongs to a dead sweep.
HEARTBEAT = ["hydra.sweeper.heartbeat_interval=1", "hydra.sweeper.grace_period=2"]


def wait_for(condition, timeout: float = 60.0) -> None:
    """Poll `condition` until true; a study not created yet (KeyError) counts as false."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return
        except KeyError:
            pass
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.slow
def test_a_killed_sweep_resumes_and_loses_no_complete_trial(sweep):
    args = ["x=interval(0, 4)", "sleep=0.5", "hydra.sweeper.sampler=random", "hydra.sweeper.seed=0",
            "hydra.sweeper.n_trials=4", *HEARTBEAT]
    proc = sweep.start(*args)
    # Kill it (SIGKILL: no cleanup) while a trial runs and after one has completed.
    wait_for(lambda: sweep.db.exists() and sweep.trials("COMPLETE") and sweep.trials("RUNNING"))
    proc.kill()
    proc.wait()
    before = {t.number: (t.params, t.value) for t in sweep.trials("COMPLETE")}
    (interrupted,) = sweep.trials("RUNNING")
    time.sleep(3.5)  # its heartbeat goes stale (SQLite timestamps have 1 s resolution)

    sweep.run(*args)
    after = {t.number: t for t in sweep.trials()}
    for number, (params, value) in before.items():
        assert (after[number].state.name, after[number].params, after[number].value) == ("COMPLETE", params, value)
    assert after[interrupted.number].state.name == "FAIL"
    (retry,) = [t for t in after.values() if t.system_attrs.get("failed_trial") == interrupted.number]
    assert retry.state.name == "COMPLETE" and retry.params == interrupted.params
    # Numbers go on; the budget counts the interrupted trial once: 4 COMPLETE + its FAIL.
    assert sorted(after) == list(range(5))
    assert len(sweep.trials("COMPLETE")) == 4


def test_two_workers_share_one_study(sweep):
    args = ["x=interval(0, 4)", "sleep=0.5", "hydra.sweeper.sampler=random", "hydra.sweeper.n_trials=8", *HEARTBEAT]
    workers = [sweep.start(*args, sweep_dir=sweep.root / f"worker{i}") for i in range(2)]
    assert [w.wait(timeout=120) for w in workers] == [0, 0]
    trials = sweep.trials()
    # Both asked through the storage until the study held 8 trials (a race can add one).
    assert 8 <= len(trials) <= 9 and all(t.state.name == "COMPLETE" for t in trials)
    ran_by = {t.user_attrs["output_dir"].split("/worker")[1][0] for t in trials}
    assert ran_by == {"0", "1"}


def test_a_sweep_stopped_with_ctrl_c_queues_its_running_trial_again(sweep):
    args = ["x=interval(0, 4)", "sleep=1", "hydra.sweeper.sampler=random", "hydra.sweeper.n_trials=2"]
    proc = sweep.start(*args)
    wait_for(lambda: list(sweep.sweep_dir.glob("*/trial.txt")))  # the first job is sleeping
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) != 0
    (interrupted,) = sweep.trials("FAIL")
    (queued,) = sweep.trials("WAITING")
    assert queued.params == interrupted.params
    sweep.run(*args)  # no heartbeat to wait for: the retry is queued already
    assert [t.state.name for t in sweep.trials()] == ["FAIL", "COMPLETE", "COMPLETE"]
    assert sweep.trials()[1].params == interrupted.params


def test_a_continued_study_counts_earlier_trials_and_does_not_replay_its_seed(sweep):
    args = ["x=interval(0, 4)", "hydra.sweeper.sampler=random", "hydra.sweeper.seed=0"]
    sweep.run(*args, "hydra.sweeper.n_trials=2")
    sweep.run(*args, "hydra.sweeper.n_trials=4")
    xs = [t.params["x"] for t in sweep.trials("COMPLETE")]
    assert len(xs) == 4 and len(set(xs)) == 4
