"""What every bench script shares: the CPU's name for its results, and its table in text or markdown.

Results are only comparable on the same CPU, so each script names it; bench/run_all.py pastes the
markdown tables (`--markdown`) into BENCHMARKS.md. Bench scripts are run as `python bench/x.py`, so
they put the repository root on sys.path before `from bench.machine import ...`. Nothing here imports
torch (model.precision reads /proc/cpuinfo without it): the scripts that time imports stay unaffected.
"""

from __future__ import annotations

import platform
from collections.abc import Sequence

from model.precision import proc_cpuinfo


def cpu_name() -> str:
    """The CPU model (results are only comparable on the same CPU), read as precision `auto` reads it."""
    found = proc_cpuinfo()
    return found[0] if found is not None else platform.processor() or "unknown CPU"


def render_table(
    header: Sequence[str], body: Sequence[Sequence[str]], markdown: bool, *, align: str = "right"
) -> str:
    """The table as markdown, or as aligned text (cells padded on the left for `right`, else on the right)."""
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in body])
    widths = [max(len(cell) for cell in column) for column in zip(header, *body, strict=True)]
    pad = str.rjust if align == "right" else str.ljust
    lines = [
        "  ".join(pad(cell, width) for cell, width in zip(row, widths, strict=True))
        for row in [header, *body]
    ]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)
