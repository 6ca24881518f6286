"""Results from W&B: runs read back into result rows (for the same tables), and a W&B Report comparing groups.

Every Hydra job is one W&B run (group = experiment or sweep) whose config is the job's resolved config. The
eval stage (`cmt.stages.evaluate`) logs each evaluated (method, benchmark, split) as summary metrics named

    val/<method>/<benchmark>/<split>/<field>      e.g. val/comt_sft/synthetic/ood_steps/accuracy

where ``<field>`` is a numeric field of the result row (accuracy, ece, mean_output_tokens, ...). The ID/OOD
tag is not logged; the tables infer it from the split or benchmark name (`cmt.results.columns.row_tag`).
`rows_from_run` turns one run's summary and config, as plain dicts, into the store's row dicts;
`fetch_rows` is a thin layer over ``wandb.Api().runs``. Without W&B credentials (offline mode) the CLI
builds the same tables from the local store instead (``python -m cmt.results wandb``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from cmt.results.store import ROW_FIELDS

# Summary keys holding result-row fields (see the module docstring).
SUMMARY_KEY = re.compile(r"^val/(?P<method>[^/]+)/(?P<benchmark>[^/]+)/(?P<split>[^/]+)/(?P<field>[^/]+)$")
# Row fields read from summary keys: the metrics of one evaluation (`cmt.eval.evaluate.metrics`) and its time.
SUMMARY_FIELDS = ("n", "accuracy", "accuracy_strict", "extraction_fail_rate", "ece", "brier",
                  "overconfident_error_rate", "mean_output_tokens", "truncation_rate", "eval_time_s")
# Row fields read from the run config, by dotted path in the job's resolved config.
CONFIG_FIELDS = {"experiment": "experiment_name", "sweep": "sweep_name", "model": "model.name",
                 "teacher": "teacher.name", "stage": "stage.name", "seed": "seed"}


def _unwrap(node: Any) -> Any:
    if isinstance(node, Mapping) and "value" in node and set(node) <= {"value", "desc"}:
        return node["value"]
    return node


def config_value(config: Mapping[str, Any], dotted: str) -> Any:
    """A value of a W&B run config by dotted path, nested (``{"model": {"name": ...}}``) or flat (``"model.name"``).

    W&B may store values wrapped as ``{"value": x}``; wrappers are removed. A missing path gives None.
    """
    if dotted in config:
        return _unwrap(config[dotted])
    node: Any = config
    for part in dotted.split("."):
        node = _unwrap(node)
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return _unwrap(node)


def rows_from_run(summary: Mapping[str, Any], config: Mapping[str, Any], run_id: str,
                  created_at: str | None = None) -> list[dict[str, Any]]:
    """The result rows one W&B run holds: one per (method, benchmark, split) with an accuracy in its summary.

    Args:
        summary: The run's summary metrics (``run.summary_metrics``).
        config: The run's config (``run.config``).
        run_id: The W&B run id, kept as the row's ``run_id``.
        created_at: The run's creation time.

    Returns:
        Rows with every field of `cmt.results.store.ROW_FIELDS` (None where W&B does not hold it).
    """
    identity = {field: config_value(config, path) for field, path in CONFIG_FIELDS.items()}
    rows: dict[tuple[str, str, str], dict[str, Any]] = {}
    for key, value in summary.items():
        match = SUMMARY_KEY.match(key)
        if not match or match["field"] not in SUMMARY_FIELDS:
            continue
        row = rows.setdefault((match["method"], match["benchmark"], match["split"]), {
            **dict.fromkeys(ROW_FIELDS), **identity, "run_id": run_id, "created_at": created_at,
            "method": match["method"], "benchmark": match["benchmark"], "split": match["split"]})
        row[match["field"]] = value
    return [row for row in rows.values() if row.get("accuracy") is not None]


def run_filters(experiment: str | None = None, sweep: str | None = None) -> dict[str, Any] | None:
    """W&B API (MongoDB-style) filters selecting runs of an experiment and/or sweep, by config or group."""
    clauses = [{"$or": [{f"config.{key}": value}, {"group": value}]}
               for key, value in (("experiment_name", experiment), ("sweep_name", sweep)) if value is not None]
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def fetch_rows(path: str, experiment: str | None = None, sweep: str | None = None) -> list[dict[str, Any]]:
    """Result rows of the runs of the W&B project ``path`` (``entity/project``), read through the public API.

    Raises:
        wandb.errors.CommError: W&B cannot be reached or the project does not exist.
    """
    import wandb

    runs = wandb.Api().runs(path, filters=run_filters(experiment, sweep))
    return [row for run in runs for row in rows_from_run(run.summary_metrics, run.config, run.id, run.created_at)]


class ReportUnavailable(RuntimeError):
    """The W&B Report API (package ``wandb-workspaces``) is not installed."""


def create_report(path: str, rows: Sequence[dict[str, Any]], groups: Sequence[str], group_field: str,
                  table_markdown: str, title: str) -> str:
    """Save a W&B Report comparing ``groups`` of runs: the Markdown table, then accuracy bar charts per split.

    Args:
        path: ``entity/project``, or ``project`` of the API key's default entity.
        rows: The rows read from W&B (they name the summary keys to chart).
        groups: Experiment or sweep names, one run set each.
        group_field: The config key the groups are values of (``experiment_name`` or ``sweep_name``).
        table_markdown: The comparison table, as rendered by `cmt.results.render.to_markdown`.
        title: The report's title.

    Returns:
        The report's URL.

    Raises:
        ReportUnavailable: ``wandb-workspaces`` is not installed.
    """
    try:
        import wandb_workspaces.reports.v2 as wr
    except ImportError as error:
        raise ReportUnavailable("a W&B Report needs the wandb-workspaces package (pip install wandb-workspaces); "
                                "the tables above do not") from error
    entity, _, project = path.rpartition("/")
    if not entity:
        import wandb

        entity = wandb.Api().default_entity
    evaluations = sorted({(row["benchmark"], row["split"]) for row in rows})
    methods = sorted({row["method"] for row in rows})
    panels = [wr.BarPlot(title=f"{benchmark}/{split} accuracy",
                         metrics=[f"val/{method}/{benchmark}/{split}/accuracy" for method in methods],
                         groupby_aggfunc="mean", groupby_rangefunc="stddev")
              for benchmark, split in evaluations]
    runsets = [wr.Runset(entity=entity, project=project, name=group,
                         filters=f"Config('{group_field}') == '{group}'", groupby=["config.model.name"])
               for group in groups]
    report = wr.Report(entity=entity, project=project, title=title,
                       description="Result tables of cmt (python -m cmt.results wandb --report)",
                       blocks=[wr.MarkdownBlock(text=table_markdown), wr.PanelGrid(runsets=runsets, panels=panels)])
    report.save()
    return report.url
