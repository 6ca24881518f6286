"""Turn what a job returned into the objective values of its trial.

The convention, one value per direction:
  * ``objectives: [val/ood_accuracy, train_tokens]``: the job returns a dict; these keys, in order.
  * ``objectives: null``: the job returns a number (one direction) or a list of numbers.
Anything ``float()`` accepts counts as a number (Python and NumPy numbers, 0-d tensors).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hydra.errors import CompactHydraException


class ObjectiveError(CompactHydraException, ValueError):
    """The job's return value does not fit the sweeper's `objectives`/`directions`: a config error,
    printed by Hydra as one line."""


def objective_values(returned: Any, objectives: list[str] | None, n_directions: int) -> list[float]:
    """The objective values in `returned`, or ObjectiveError saying what the sweep expected instead."""
    if objectives:
        if not isinstance(returned, Mapping):
            raise ObjectiveError(
                f"hydra.sweeper.objectives={objectives} picks from a returned dict, "
                f"but the job returned {type(returned).__name__}"
            )
        missing = [key for key in objectives if key not in returned]
        if missing:
            raise ObjectiveError(
                f"the job's returned dict has no {missing} (hydra.sweeper.objectives); "
                f"it has: {', '.join(map(str, returned))}"
            )
        values = [returned[key] for key in objectives]
    elif isinstance(returned, Mapping):
        raise ObjectiveError(
            f"the job returned a dict ({', '.join(map(str, returned))}): "
            "set hydra.sweeper.objectives to the key(s) to optimise"
        )
    elif isinstance(returned, Sequence) and not isinstance(returned, (str, bytes)):
        values = list(returned)
    else:
        values = [returned]
    if len(values) != n_directions:
        raise ObjectiveError(
            f"the sweep has {n_directions} direction(s) but the job returned {len(values)} value(s)"
        )
    try:
        if any(isinstance(v, (str, bytes)) for v in values):
            raise TypeError
        return [float(v) for v in values]
    except (TypeError, ValueError):
        raise ObjectiveError(f"the job's objective values {values!r} are not numbers") from None
