"""The report commands' pictures (curves and tables), drawn with matplotlib, the optional extra ``plots``.

Only matplotlib's object-oriented API is used (``Figure`` and its Agg canvas, never ``pyplot``), so
drawing changes no global backend or state of the caller's matplotlib.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import ZooError

PLOTS_EXTRA = 'pip install "cutmix-zoo[plots]"'


def require_matplotlib() -> None:
    """Raise one sentence naming the ``plots`` extra when matplotlib is not installed."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ZooError(f"Drawing the report's pictures needs matplotlib, which is not installed: {PLOTS_EXTRA} (or pass --no-plots).") from None


def _figure(width: float, height: float) -> Any:
    require_matplotlib()
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def _save(figure: Any, path: str | os.PathLike, tight: bool = False) -> str:
    figure.savefig(path, facecolor="white", **({"bbox_inches": "tight", "pad_inches": 0.15} if tight else {}))
    return os.fspath(path)


def curves(path: str | os.PathLike, panels: Sequence[Mapping[str, Any]], title: str = "") -> str:
    """One row of line plots written to ``path``.

    Each panel is ``{"title", "xlabel", "ylabel", "lines": {label: (xs, ys)}, "ylim": (low, high) or None}``;
    every panel has one line per label, in the same colour across panels.
    """
    figure = _figure(5.2 * len(panels), 4.2)
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    labels = list(dict.fromkeys(label for panel in panels for label in panel["lines"]))
    colours = {label: f"C{i % 10}" for i, label in enumerate(labels)}
    markers = "osD^vP*X"
    for ax, panel in zip(axes, panels):
        for label, (xs, ys) in panel["lines"].items():
            ax.plot(xs, ys, marker=markers[labels.index(label) % len(markers)], markersize=4, linewidth=1.6,
                    color=colours[label], label=label)
        ax.set_title(panel.get("title", ""))
        ax.set_xlabel(panel.get("xlabel", ""))
        ax.set_ylabel(panel.get("ylabel", ""))
        if panel.get("ylim"):
            ax.set_ylim(*panel["ylim"])
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        figure.suptitle(title)
    return _save(figure, path)


def table(path: str | os.PathLike, header: Sequence[str], rows: Sequence[Sequence[str]], title: str = "") -> str:
    """A table picture written to ``path``: ``header`` over ``rows`` (strings), one row per model."""
    wrapped = [h.replace(" (", "\n(").replace(" TNR", "\nTNR").replace(" AUROC", "\nAUROC").replace(" det.", "\ndet.") for h in header]
    width = 0.9 * len(header) + 0.08 * max((len(r[0]) for r in rows), default=10)
    figure = _figure(width, 0.9 + 0.4 * (len(rows) + 2))
    ax = figure.add_subplot()
    ax.axis("off")
    shown = ax.table(cellText=[list(r) for r in rows], colLabels=wrapped, loc="center", cellLoc="center")
    shown.auto_set_font_size(False)
    shown.set_fontsize(9)
    shown.scale(1.0, 2.2)
    for (row, _), cell in shown.get_celld().items():
        if row == 0:
            cell.set_facecolor("#e8e8e8")
            cell.set_height(cell.get_height() * 1.6)
    shown.auto_set_column_width(list(range(len(header))))
    if title:
        ax.set_title(title)
    return _save(figure, path, tight=True)


def bars(path: str | os.PathLike, labels: Sequence[str], series: Mapping[str, Sequence[float | None]], ylabel: str,
         title: str = "", errors: Mapping[str, Sequence[float | None]] | None = None) -> str:
    """Grouped bars written to ``path``: one group per label, one bar per series (a missing value, None, leaves a gap),
    each bar with its value above it; the y axis starts at 0 and leaves room above the bars for the legend. ``errors``
    (by series, as its values) draws each bar's spread as an error bar."""
    figure = _figure(max(5.0, 1.1 + len(labels) * (0.5 + 0.55 * len(series))), 4.4)
    ax = figure.add_subplot()
    width = 0.8 / len(series)
    spreads = {name: [(errors or {}).get(name, [None] * len(values))[i] or 0.0 for i in range(len(values))]
               for name, values in series.items()}
    top = max((v + spreads[name][i] for name, values in series.items() for i, v in enumerate(values) if v is not None),
              default=1.0) or 1.0
    for k, (name, values) in enumerate(series.items()):
        xs = [i + (k - (len(series) - 1) / 2) * width for i in range(len(labels)) if values[i] is not None]
        ys = [v for v in values if v is not None]
        spread = [e for v, e in zip(values, spreads[name]) if v is not None] if errors and name in errors else None
        shown = ax.bar(xs, ys, width * 0.92, label=name, color=f"C{k % 10}", yerr=spread, capsize=3 if spread else 0)
        ax.bar_label(shown, fmt="%.1f", fontsize=8, padding=2)
    ax.set_xticks(range(len(labels)), [label.replace(".", ".\n", 1) for label in labels], fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, top * 1.35)
    ax.grid(True, axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    ax.legend(fontsize=8, loc="upper left", ncols=len(series))
    if title:
        ax.set_title(title, fontsize=10)
    return _save(figure, path)
