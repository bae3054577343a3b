"""The detection transfer report: each backbone's fine-tuned detector scored over seeds, as a table, JSON and a picture.

Each model holds one :class:`DetectionScore` per seed (COCO's mAP@[.5:.95], mAP@0.5, mAP@0.75, the AP of each class
and the run's wall time, as the fine-tuning run measured them); :class:`DetectionTransfer` gives their mean and spread
(the sample standard deviation over seeds, 0 for one seed). This module only summarises and draws: the runs are made by
the command (``cutmix-zoo transfer --task detection``), so the report needs nothing of the trainer.
"""

from __future__ import annotations

import math
import os
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

METRICS = ("map", "map50", "map75", "seconds")


@dataclass(frozen=True)
class DetectionScore:
    """One fine-tuning run's numbers on the val split (fractions in [0, 1]; a class's AP None when it has no object)."""

    seed: int
    map: float
    map50: float
    map75: float
    seconds: float
    per_class: dict[str, float | None] = field(default_factory=dict)
    per_class50: dict[str, float | None] = field(default_factory=dict)
    output: str = ""


def mean_spread(values: Sequence[float]) -> tuple[float, float]:
    """The mean of ``values`` and their sample standard deviation (0 for a single value)."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


@dataclass(frozen=True)
class DetectionTransfer:
    """One backbone's detector over seeds: its runs and their mean and spread per metric and per class."""

    model: str
    runs: list[DetectionScore]

    def mean_spread(self, metric: str) -> tuple[float, float]:
        """Mean and spread over the seeds of one of :data:`METRICS`."""
        return mean_spread([getattr(run, metric) for run in self.runs])

    def class_mean(self, name: str) -> float | None:
        """The mean AP@[.5:.95] of a class over the seeds that could score it (None when none could)."""
        values = [run.per_class.get(name) for run in self.runs]
        found = [v for v in values if v is not None and not math.isnan(v)]
        return statistics.fmean(found) if found else None

    def to_dict(self) -> dict[str, Any]:
        """The model's part of ``report.json``: every run, then the mean and spread of each metric and class AP."""
        classes = list(self.runs[0].per_class) if self.runs else []
        return {"model": self.model, "runs": [asdict(run) for run in self.runs],
                "mean": {m: self.mean_spread(m)[0] for m in METRICS}, "spread": {m: self.mean_spread(m)[1] for m in METRICS},
                "per_class_mean": {name: self.class_mean(name) for name in classes}}


def _cell(mean: float, spread: float, runs: int, scale: float = 100.0, digits: int = 2) -> str:
    text = f"{scale * mean:.{digits}f}"
    return text + (f" ± {scale * spread:.{digits}f}" if runs > 1 else "")


def summary_rows(results: Mapping[str, DetectionTransfer]) -> tuple[list[str], list[list[str]]]:
    """The table's header and one row per model: mAP, mAP@0.5, mAP@0.75 (percent) and wall seconds, mean ± spread."""
    header = ["model", "mAP %", "mAP@0.5 %", "mAP@0.75 %", "wall s", "seeds"]
    rows = []
    for name, result in results.items():
        count = len(result.runs)
        cells = [_cell(*result.mean_spread(m), count) for m in ("map", "map50", "map75")]
        rows.append([name, *cells, _cell(*result.mean_spread("seconds"), count, 1.0, 1), str(count)])
    return header, rows


def class_rows(results: Mapping[str, DetectionTransfer]) -> tuple[list[str], list[list[str]]]:
    """Per-class AP@[.5:.95] (percent, mean over seeds): one row per class, one column per model ('-': nothing to score)."""
    names = list(results)
    classes = list(dict.fromkeys(c for r in results.values() for run in r.runs for c in run.per_class))
    rows = []
    for c in classes:
        means = [results[n].class_mean(c) for n in names]
        rows.append([c, *("-" if m is None else f"{100 * m:.2f}" for m in means)])
    return ["class AP %", *names], rows


def detection_picture(path: str | os.PathLike, results: Mapping[str, DetectionTransfer], title: str = "") -> str:
    """Grouped bars of mAP and mAP@0.5 (percent) per model, each with its spread over seeds as an error bar."""
    from .plots import bars

    series: dict[str, list[float | None]] = {}
    errors: dict[str, list[float | None]] = {}
    for metric, label in (("map", "mAP@[.5:.95]"), ("map50", "mAP@0.5")):
        pairs = [r.mean_spread(metric) for r in results.values()]
        series[label] = [100 * m for m, _ in pairs]
        errors[label] = [100 * s for _, s in pairs]
    return bars(path, list(results), series, "val mAP (%)", title, errors=errors)
