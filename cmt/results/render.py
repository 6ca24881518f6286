"""Render a built result table (`cmt.results.table`) as Markdown, LaTeX or CSV.

Cells show the mean over seeds, `` ± `` the sample standard deviation and, in parentheses, the difference
from the baseline method. pandas' ``to_latex``/``to_markdown`` are not used: these cells, the rule between
models and the notes would need as much code around them, and the output must stay byte for byte as it is.
"""

from __future__ import annotations

import csv
import io
import re

from cmt.results.columns import Cell, Column, Table

# The paper's names of our methods, in pipeline order (`cmt.results.table.method_rank` sorts lines by it).
METHOD_NAMES = {"base": "Base", "cot_sft": "CoT-SFT", "cot_sft_rl": "CoT-SFT + RL", "comt_sft": "CoMT-SFT",
                "comt_ccrl": "CoMT + CCRL"}


def _format(cell: Cell, column: Column, std_sep: str, delta: bool) -> str:
    if cell.mean is None:
        return ""
    text = f"{cell.mean:.{column.digits}f}"
    if cell.std is not None:
        text += f"{std_sep}{cell.std:.{column.digits}f}"
    if delta and cell.delta is not None:
        text += f" ({cell.delta:+.{column.digits}f})"
    return text


def method_name(method: str) -> str:
    """The method's name as the paper writes it (unknown methods as they are)."""
    return METHOD_NAMES.get(method, method)


def to_markdown(table: Table) -> str:
    """A GitHub Markdown table with the title above and the notes below."""
    header = ["Model", "Method", "Seeds", *(c.title for c in table.columns)]
    out = [f"**{table.title}**", "", "| " + " | ".join(header) + " |",
           "|" + "|".join(["---"] * 3 + ["---:"] * len(table.columns)) + "|"]
    for line in table.lines:
        cells = [_format(cell, column, " ± ", True) for cell, column in zip(line.cells, table.columns, strict=True)]
        seeds = str(line.seeds) if line.source == "ours" else "-"
        out.append("| " + " | ".join([line.model, method_name(line.method), seeds, *cells]) + " |")
    out += [""] + [f"- {note}" for note in table.notes]
    return "\n".join(out) + "\n"


def _latex_escape(text: str) -> str:
    return re.sub(r"([_%&#$])", r"\\\1", text).replace("±", r"$\pm$")


def to_latex(table: Table) -> str:
    """A booktabs ``tabular`` (notes as ``%`` comments); needs ``\\usepackage{booktabs}``."""
    header = ["Model", "Method", *(c.title for c in table.columns)]
    out = [f"% {_latex_escape(table.title)}", *(f"% {_latex_escape(note)}" for note in table.notes),
           r"\begin{tabular}{ll" + "r" * len(table.columns) + "}", r"\toprule",
           " & ".join(_latex_escape(h) for h in header) + r" \\", r"\midrule"]
    model = None
    for line in table.lines:
        if model is not None and line.model != model:
            out.append(r"\midrule")
        cells = [_format(cell, column, r" $\pm$ ", True)
                 for cell, column in zip(line.cells, table.columns, strict=True)]
        shown = _latex_escape(line.model) if line.model != model else ""
        out.append(" & ".join([shown, _latex_escape(method_name(line.method)), *cells]) + r" \\")
        model = line.model
    out += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(out) + "\n"


def to_csv(table: Table) -> str:
    """Wide CSV: model, method, source, seeds, then ``<column>``, ``<column>_std``, ``<column>_delta`` per column.

    Values are in display units (percent for accuracies), to six decimals; empty where absent.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["model", "method", "source", "seeds",
                     *(f"{c.label}{suffix}" for c in table.columns for suffix in ("", "_std", "_delta"))])
    for line in table.lines:
        values = [("" if value is None else round(value, 6)) for cell in line.cells
                  for value in (cell.mean, cell.std, cell.delta)]
        writer.writerow([line.model, line.method, line.source, line.seeds, *values])
    return buffer.getvalue()


RENDERERS = {"md": to_markdown, "latex": to_latex, "csv": to_csv}


def render(table: Table, fmt: str) -> str:
    """``table`` as ``md``, ``latex`` or ``csv``.

    Raises:
        ValueError: Unknown format.
    """
    if fmt not in RENDERERS:
        raise ValueError(f"format {fmt!r} is not one of {', '.join(RENDERERS)}")
    return RENDERERS[fmt](table)
