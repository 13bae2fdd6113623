"""Tables as markdown and LaTeX text, shared by reports and paper tables.

One small formatter instead of pandas' to_markdown (which needs `tabulate`)
and to_latex (which needs jinja2 and escapes differently): cells are given as
already-formatted strings, so both outputs show exactly the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$",
                  "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                  "^": r"\textasciicircum{}"}


def number(value: float | int | None, digits: int = 3) -> str:
    """A cell for a number: fixed `digits` decimals, thousands separators, '-' for none."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if isinstance(value, int) or float(value).is_integer() and abs(value) >= 1000:
        return f"{int(value):,}"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def setting(value: object) -> str:
    """A cell for a setting: whole numbers without decimals, floats compactly ('%g')."""
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return str(int(value)) if value.is_integer() else f"{value:g}"
    return str(value)


def interval(mean: float, low: float, high: float, digits: int = 3) -> str:
    """'mean [low, high]', or just the mean when there is no interval (one seed)."""
    if any(isinstance(v, float) and math.isnan(v) for v in (low, high)):
        return number(mean, digits)
    return f"{number(mean, digits)} [{number(low, digits)}, {number(high, digits)}]"


def markdown(headers: Sequence[str], rows: Sequence[Sequence[str]],
             align_right: Sequence[bool] | None = None) -> str:
    """A GitHub markdown table ('|' in cells escaped)."""
    right = list(align_right) if align_right is not None else [False] * len(headers)
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", r"\|") for c in cells) + " |"
    rule = "|" + "|".join("---:" if r else "---" for r in right) + "|"
    return "\n".join([line(headers), rule, *(line(r) for r in rows)]) + "\n"


def latex_escape(text: str) -> str:
    """Text safe inside a LaTeX table cell."""
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))


def latex(headers: Sequence[str], rows: Sequence[Sequence[str]], caption: str = "",
          label: str = "", align_right: Sequence[bool] | None = None) -> str:
    """A booktabs `table` environment (needs \\usepackage{booktabs})."""
    right = list(align_right) if align_right is not None else [False] * len(headers)
    spec = "".join("r" if r else "l" for r in right)
    def line(cells: Sequence[str]) -> str:
        return " & ".join(latex_escape(c) for c in cells) + r" \\"
    parts = [r"\begin{table}[t]", r"\centering", rf"\begin{{tabular}}{{{spec}}}",
             r"\toprule", line(headers), r"\midrule", *(line(r) for r in rows),
             r"\bottomrule", r"\end{tabular}"]
    if caption:
        parts.append(rf"\caption{{{latex_escape(caption)}}}")
    if label:
        parts.append(rf"\label{{{label}}}")
    parts.append(r"\end{table}")
    return "\n".join(parts) + "\n"
