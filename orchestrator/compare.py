"""``fedfrontier compare DIR...``: several sweeps' frontiers on one plot, their trials in one table.

For instance record-level against client-level DP, or two trust models: each sweep directory
(what ``fedfrontier sweep`` wrote) is one colour; every trial is a point, each sweep's Pareto
front a line, each sweep's non-private baseline a dashed line. Pure pandas and matplotlib.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from orchestrator.files import atomic_write
from orchestrator.frontier import (CHOOSE, GUARANTEES, NOISE_LABELS, REPORT, _is_baseline, check_validation,
                                   load_sweep, pareto_front, trial_labels, varied_guarantees)

SHORT = {"eps_record_max": "record", "eps_client": "client"}
DASHES = ("--", ":", "-.", (0, (5, 1, 1, 1)))  # one per sweep, so equal baselines stay visible
SUMMARY = ["sweep", "trial", "eps_record_max", "eps_client", "val_accuracy", "test_accuracy", "frontier", "status"]


def sweep_names(dirs: Sequence[str | Path]) -> list[str]:
    """A short name per directory: its folder name, or the path as given where folder names repeat."""
    names = [Path(d).name or str(d) for d in dirs]
    return [n if names.count(n) == 1 else str(d) for n, d in zip(names, dirs)]


def load_sweeps(dirs: Sequence[str | Path]) -> dict[str, tuple[pd.DataFrame, pd.DataFrame]]:
    """``{sweep name: (trials, rounds)}``; FileNotFoundError naming the directory that is not a sweep."""
    if not dirs:
        raise FileNotFoundError("no sweep directory given")
    sweeps = {name: load_sweep(d) for name, d in zip(sweep_names(dirs), dirs)}
    for d, (trials, _) in zip(dirs, sweeps.values()):
        check_validation(trials, str(d))
    return sweeps


def joined_table(sweeps: dict[str, tuple[pd.DataFrame, pd.DataFrame]]) -> pd.DataFrame:
    """Every trial of every sweep, with ``sweep`` (its directory), ``trial`` (what differs between that
    sweep's trials, e.g. "σ=1.2") and ``frontier`` (the guarantees on whose Pareto front, within its own
    sweep, the trial lies: "record", "client", "record+client" or "")."""
    parts = []
    for name, (trials, _) in sweeps.items():
        t = trials.copy()
        t["trial_id"] = t["trial_id"].astype(str)
        labels = trial_labels(t)
        on = {tid: [] for tid in t["trial_id"]}
        for col in varied_guarantees(t) or ["eps_record_max"]:
            if col in t and CHOOSE in t:
                for tid in pareto_front(t, privacy=col, utility=CHOOSE)["trial_id"]:
                    on[tid].append(SHORT[col])
        t.insert(0, "frontier", [" + ".join(on[tid]) for tid in t["trial_id"]])
        t.insert(0, "trial", [labels[tid] for tid in t["trial_id"]])
        t.insert(0, "sweep", name)
        parts.append(t)
    table = pd.concat(parts, ignore_index=True, sort=False)
    first = [c for c in SUMMARY if c in table] + ["trial_id"]
    return table[first + [c for c in table.columns if c not in first]]


def compare_figure(table: pd.DataFrame, *, utility: str = REPORT, choose: str = CHOOSE,
                   title: str = "Privacy-utility frontiers compared"):
    """Epsilon (log axis) against ``utility``: one colour per sweep, its trials as points, its Pareto
    front (chosen on ``choose``, the validation accuracy) as a step line, its non-private baseline dashed;
    one panel per guarantee any sweep varied."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    guarantees = varied_guarantees(table) or ["eps_record_max"]
    fig, axes = plt.subplots(1, len(guarantees), figsize=(6.6 * len(guarantees), 4.8), squeeze=False)
    names = list(dict.fromkeys(table["sweep"]))
    colors = {n: plt.get_cmap("tab10")(i % 10) for i, n in enumerate(names)}
    markers = "osD^v<>px*"
    ok = table[table[utility].notna()] if utility in table else table.iloc[:0]
    with_points = {n for n in names for col in guarantees
                   if col in ok and np.isfinite(ok.loc[ok["sweep"] == n, col].to_numpy(float)).any()}
    for ax, col in zip(axes[0], guarantees):
        label, _ = GUARANTEES[col]
        drawn = False
        for i, name in enumerate(names):
            mine = ok[ok["sweep"] == name]
            eps = mine[col].to_numpy(float) if col in mine else np.full(len(mine), math.nan)
            private = mine[np.isfinite(eps)]
            color = colors[name]
            if len(private):
                drawn = True
                ax.scatter(private[col], private[utility], s=34, color=color, marker=markers[i % len(markers)],
                           alpha=0.8, zorder=3, label=f"{name}")
                front = pareto_front(private, privacy=col, utility=choose)
                ax.step(front[col], front[utility], where="post", color=color, lw=2, alpha=0.9, zorder=2)
                noise_col, symbol = NOISE_LABELS[col]
                if noise_col in private:
                    for x, y, v in zip(private[col], private[utility], private[noise_col]):
                        ax.annotate(f"{symbol}={v:.3g}", (x, y), textcoords="offset points", xytext=(4, 4),
                                    fontsize=7, color=color)
            base = mine[[_is_baseline(r) for _, r in mine.iterrows()]] if len(mine) else mine
            if len(base) and (len(private) or name not in with_points):  # a baseline beside its own sweep's points
                best = base.loc[base[choose].idxmax(), utility] if base[choose].notna().any() else math.nan
                ax.axhline(best, color=color, ls=DASHES[i % len(DASHES)], lw=1.3, alpha=0.9,
                           label=f"{name}: non-private ({best:.3f})")
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.margins(x=0.12)
        ax.set_xlabel(f"ε, {label}")
        ax.set_ylabel(utility.replace("_", " "))
        ax.set_title(label)
        ax.grid(True, which="both", alpha=0.3)
        if not drawn:
            ax.text(0.5, 0.5, "no finite ε in these sweeps", transform=ax.transAxes, ha="center")
        ax.legend(loc="lower right", fontsize=8, title="sweep (line: its Pareto front)", title_fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def compare_sweeps(dirs: Sequence[str | Path], out: str | Path = ".") -> tuple[pd.DataFrame, Path, Path]:
    """Load the sweeps, write ``compare.parquet`` (the joined table) and ``compare.png`` into ``out``;
    return ``(table, parquet path, png path)``."""
    import matplotlib.pyplot as plt

    table = joined_table(load_sweeps(dirs))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    parquet, png = out / "compare.parquet", out / "compare.png"
    atomic_write(parquet, lambda p: table.to_parquet(p, index=False))
    fig = compare_figure(table)
    atomic_write(png, lambda p: fig.savefig(p, dpi=120, format="png"))
    plt.close(fig)
    return table, parquet, png


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """The columns a person reads first, sorted by sweep then epsilon."""
    cols = [c for c in SUMMARY if c in table]
    by = [c for c in ("sweep", "eps_record_max", "eps_client") if c in table]
    return table[cols].sort_values(by, kind="stable").reset_index(drop=True)
