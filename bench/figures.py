"""What a benchmark reports: figures (a value, its unit, and what it is compared with), printed
as one table and written as JSON."""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Figure:
    section: str
    name: str
    value: float
    unit: str
    against: str = ""  # the baseline or goal it is compared with, in words
    ratio: float | None = None  # value / the baseline's value, if there is one
    goal: str = ""

    def row(self) -> tuple[str, str, str, str]:
        shown = f"{self.value:,.0f}" if abs(self.value) >= 100 else f"{self.value:.3g}"
        against = self.against
        if self.ratio is not None:
            against = f"{self.ratio:.2f}x {against}".strip()
        return (f"{self.section}: {self.name}", f"{shown} {self.unit}", against, self.goal)


@dataclass
class Report:
    figures: list[Figure] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def add(self, figure: Figure) -> None:
        self.figures.append(figure)
        print("  " + "  |  ".join(part for part in figure.row() if part), flush=True)

    def table(self) -> str:
        header = ("figure", "measured", "against (same run)", "goal")
        rows = [header, *(f.row() for f in self.figures)]
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        lines = [
            "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |"
            for r in rows
        ]
        lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
        return "\n".join(lines)

    def write(self, path: Path, run: dict[str, Any]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        document = {
            "run": run,
            "figures": [asdict(f) for f in self.figures],
            "details": self.details,
        }
        path.write_text(json.dumps(document, indent=2, default=str) + "\n")


def ms(seconds: Sequence[float]) -> list[float]:
    return [round(s * 1000, 1) for s in seconds]


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]
