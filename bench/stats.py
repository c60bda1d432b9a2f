"""Repeated runs summarised: median and spread of each figure, ratios to a baseline, targets.

The machine is shared and noisy, so a figure is never one reading: each section runs R
times, and a ratio is taken within each repetition (Orchestra and its baseline measured
seconds apart) before the median is taken over repetitions.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass


def spread(values: list[float]) -> dict:
    """Median, min and max of one figure's readings over the repetitions."""
    if not values:
        return {"n": 0, "median": None, "min": None, "max": None}
    return {
        "n": len(values),
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
    }


def ratios(figures: list[float], baselines: list[float]) -> list[float]:
    """Figure / baseline, repetition by repetition (same-moment noise cancels)."""
    return [f / b for f, b in zip(figures, baselines, strict=True) if b]


@dataclass
class Row:
    """One line of the figures table: a figure's readings, and its baseline's if it has one."""

    section: str
    name: str
    unit: str
    figures: list[float]
    baselines: list[float] | None = None
    note: str = ""

    def as_dict(self) -> dict:
        """The row with its summaries, as saved in the JSON results."""
        out = {
            "section": self.section,
            "name": self.name,
            "unit": self.unit,
            "note": self.note,
            "figure": spread(self.figures),
            "readings": self.figures,
        }
        if self.baselines is not None:
            out["baseline"] = spread(self.baselines)
            out["baseline_readings"] = self.baselines
            out["ratio"] = spread(ratios(self.figures, self.baselines))
        return out


@dataclass
class Target:
    """A promise of the issue: `figure <op> limit`, where limit is absolute or a baseline ratio."""

    name: str
    figure: dict  # a spread()
    unit: str
    limit: float  # in the figure's unit, or a ratio when `ratio` is given
    op: str  # ">=" or "<="
    ratio: dict | None = None  # a spread() of figure / baseline, compared with `limit` instead
    baseline: dict | None = None
    note: str = ""

    def compared(self) -> float | None:
        """The median that is held against the limit."""
        part = self.ratio if self.ratio is not None else self.figure
        return part["median"]

    def met(self) -> bool | None:
        """Whether the median meets the target (None when it was not measured)."""
        value = self.compared()
        if value is None:
            return None
        return value >= self.limit if self.op == ">=" else value <= self.limit

    def as_dict(self) -> dict:
        """The target with its verdict, as saved in the JSON results."""
        return {
            "name": self.name,
            "unit": self.unit,
            "limit": self.limit,
            "op": self.op,
            "figure": self.figure,
            "baseline": self.baseline,
            "ratio": self.ratio,
            "met": self.met(),
            "note": self.note,
        }
