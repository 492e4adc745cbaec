"""Privacy-utility frontier analysis: pure pandas and matplotlib, no Ray.

``load_sweep`` reads a sweep directory, ``pareto_front`` keeps the non-dominated trials
(least epsilon for the most accuracy), ``plot_frontier`` draws epsilon (log axis) against
accuracy with one panel per guarantee the sweep varied.

Every choice is made on the validation split (:data:`CHOOSE`, ``val_accuracy``: records held out of the
training pool, actors/holdout.py); the accuracy published for a chosen trial is its test accuracy
(:data:`REPORT`). A table without validation accuracies is refused rather than ranked on the test set.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from orchestrator.files import atomic_write

GUARANTEES = {  # privacy column -> (panel title, delta column)
    "eps_record_max": ("record-level (one example)", "delta_record"),
    "eps_client": ("client-level (one client)", "delta_client"),
}
NOISE_LABELS = {"eps_record_max": ("client.noise_multiplier", "σ"), "eps_client": ("server.noise_multiplier", "z")}
CHOOSE, REPORT = "val_accuracy", "test_accuracy"  # rank and choose on the first; publish the second


class NoValidation(ValueError):
    """Trials without validation accuracy: choosing among them would use the test set."""


def check_validation(trials: pd.DataFrame, where: str) -> None:
    """NoValidation if no finished trial of ``trials`` has a validation accuracy to be chosen on."""
    if len(trials) and (CHOOSE not in trials or not trials[CHOOSE].notna().any()):
        raise NoValidation(f"{where}: its trials have no {CHOOSE} (run with data.validation = 0, or by an older "
                           "version): a frontier chosen on the test set over-states utility; run the sweep "
                           "again with a validation split")


def load_sweep(path: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(trials, rounds)`` tables of a sweep directory."""
    path = Path(path)
    missing = [f for f in ("trials.parquet", "rounds.parquet") if not (path / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{path} is not a sweep directory (missing {', '.join(missing)})")
    return pd.read_parquet(path / "trials.parquet"), pd.read_parquet(path / "rounds.parquet")


def pareto_front(df: pd.DataFrame, *, privacy: str = "eps_record_max",
                 utility: str = CHOOSE) -> pd.DataFrame:
    """Rows not dominated by any other row, sorted by ``privacy`` (ascending).

    Row a dominates row b if a spends no more epsilon and reaches no less utility, and is
    strictly better in one. Rows with NaN utility (failed trials) or NaN epsilon are
    dropped; epsilon = inf (no protection) is kept and can only be on the front if it
    has the strictly best utility. Exact ties keep their first row.
    """
    for col in (privacy, utility):
        if col not in df.columns:
            raise KeyError(f"column {col!r} not in the table (have: {', '.join(map(str, df.columns))})")
    d = df[df[utility].notna() & df[privacy].notna()]
    d = d.sort_values([privacy, utility], ascending=[True, False], kind="stable")
    keep, best = [], -math.inf
    for idx, u in zip(d.index, d[utility]):
        if u > best:  # strictly better than every row with no more epsilon
            keep.append(idx)
            best = u
    return d.loc[keep]


def _non_private(df: pd.DataFrame) -> pd.Series:
    """Rows with no finite epsilon at any level: the non-private baseline."""
    mask = pd.Series(True, index=df.index)
    for col in GUARANTEES:
        if col in df:
            mask &= ~np.isfinite(df[col].to_numpy(float))
    return mask


def varied_guarantees(trials: pd.DataFrame) -> list[str]:
    """The privacy columns that take at least one finite value in the sweep."""
    return [c for c in GUARANTEES if c in trials.columns and np.isfinite(trials[c].to_numpy(float)).any()]


def plot_frontier(trials: pd.DataFrame, path: str | Path, *, utility: str = REPORT, choose: str = CHOOSE,
                  guarantees: Sequence[str] | None = None, audit_column: str | None = "eps_audit_lower",
                  title: str = "Privacy-utility frontier") -> Path:
    """Epsilon (log axis) against ``utility``: every trial a point, the Pareto front -- chosen on ``choose`` --
    a line through the chosen trials' ``utility``, the non-private baseline (its best on ``choose``) a
    horizontal line; one panel per guarantee. Where the table has an audited lower bound
    (``audit_column``), it is drawn beside the claimed epsilon."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    guarantees = list(guarantees or varied_guarantees(trials)) or ["eps_record_max"]
    fig, axes = plt.subplots(1, len(guarantees), figsize=(6.2 * len(guarantees), 4.6), squeeze=False)
    ok = trials[trials[utility].notna()] if utility in trials else trials.iloc[:0]
    for ax, col in zip(axes[0], guarantees):
        label, delta_col = GUARANTEES[col]
        eps = ok[col].to_numpy(float) if col in ok else np.array([])
        finite = np.isfinite(eps)
        private = ok[finite]
        ax.scatter(private[col], private[utility], s=36, color="tab:blue", alpha=0.75, label="trial", zorder=3)
        front = pareto_front(private, privacy=col, utility=choose)
        if len(front):
            ax.step(front[col], front[utility], where="post", color="tab:red", lw=2,
                    label=f"Pareto frontier (chosen on {choose.split('_')[0]})", zorder=2)
            ax.scatter(front[col], front[utility], s=60, facecolors="none", edgecolors="tab:red", zorder=4)
        baseline = ok[_non_private(ok)]
        if len(baseline):
            best = baseline.loc[baseline[choose].idxmax(), utility] if baseline[choose].notna().any() else math.nan
            ax.axhline(best, color="gray", ls="--", label=f"non-private ({best:.3f})")
        if audit_column and audit_column in ok and col == "eps_client":
            aud = ok[np.isfinite(ok[audit_column].to_numpy(float)) & finite]
            if len(aud):
                ax.scatter(aud[audit_column].clip(lower=1e-3), aud[utility], marker="x", color="tab:green",
                           label="audited lower bound", zorder=3)
        noise_col, symbol = NOISE_LABELS[col]
        if noise_col in private:
            for x, y, v in zip(private[col], private[utility], private[noise_col]):
                ax.annotate(f"{symbol}={v:.3g}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7,
                            color="0.3")
        deltas = private[delta_col].dropna().unique() if delta_col in private else []
        _style_panel(ax, label=label, deltas=deltas, utility=utility, empty=not finite.any())
    fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda p: fig.savefig(p, dpi=120, format="png"))
    plt.close(fig)
    return path


def _style_panel(ax, *, label: str, deltas, utility: str, empty: bool) -> None:
    """A frontier panel's log epsilon axis (1, 2, 5 ticks), labels with its delta, grid and legend."""
    import matplotlib.ticker

    dtxt = f"δ = {deltas[0]:.1e}" if len(deltas) == 1 else ("δ varies" if len(deltas) else "")
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.margins(x=0.12)
    ax.set_xlabel(f"ε, {label}" + (f" ({dtxt})" if dtxt else ""))
    ax.set_ylabel(utility.replace("_", " "))
    ax.set_title(label)
    ax.grid(True, which="both", alpha=0.3)
    if empty:  # only baselines: a log axis needs some positive range to draw them on
        ax.set_xlim(0.1, 100)
        ax.text(0.5, 0.5, "no finite ε in this sweep", transform=ax.transAxes, ha="center")
    ax.legend(loc="lower right", fontsize=8)


FRONTIER_COLUMNS = ["trial_id", "eps_record_max", "eps_client", "val_accuracy", "test_accuracy", "client.dp",
                    "client.noise_multiplier", "client.max_grad_norm", "server.noise_multiplier", "server.clip",
                    "client.lr", "rounds_done"]


def frontier_table(trials: pd.DataFrame, *, utility: str = CHOOSE) -> pd.DataFrame:
    """The Pareto front of every varied guarantee (chosen on ``utility``, the validation accuracy), stacked,
    with a ``guarantee`` column; ``test_accuracy`` is what each chosen trial publishes."""
    parts = []
    for col in varied_guarantees(trials) or ["eps_record_max"]:
        front = pareto_front(trials, privacy=col, utility=utility)
        cols = [c for c in FRONTIER_COLUMNS if c in front.columns]
        parts.append(front[cols].assign(guarantee=col))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=FRONTIER_COLUMNS)


# --- trial labels and the per-round plot -------------------------------------------------------

KEY_LABELS = {"client.noise_multiplier": "σ", "server.noise_multiplier": "z", "client.max_grad_norm": "C",
              "server.clip": "S", "client.target_epsilon": "target ε", "server.target_epsilon": "target ε_client",
              "client.lr": "lr", "server.lr": "server lr", "data.num_clients": "N",
              "server.clients_per_round": "m"}
CONFIG_SECTIONS = ("data.", "model.", "client.", "server.", "audit.", "run.")
NOT_A_LABEL = ("run.name", "client.dp", "run.noise_seed",  # the baseline is named, not described by these
               "audit.canaries")  # resolved from the server noise: follows z, says nothing of its own


def _is_baseline(row: pd.Series) -> bool:
    """The non-private baseline: named so by the sweep, or epsilon = inf at every level (a failed
    trial's NaN does not count)."""
    if row.get("run.name") == "baseline":
        return True
    eps = [row.get(c) for c in GUARANTEES if c in row.index]
    return bool(eps) and all(isinstance(e, (int, float)) and e == math.inf for e in eps)


def varied_keys(trials: pd.DataFrame) -> list[str]:
    """Config columns (``section.key``) taking more than one value among the private trials: what the sweep varied."""
    private = trials[[not _is_baseline(r) for _, r in trials.iterrows()]] if len(trials) else trials
    out = []
    for col in trials.columns:
        if not col.startswith(CONFIG_SECTIONS) or col in NOT_A_LABEL:
            continue
        values = private[col].dropna() if col in private else pd.Series(dtype=object)
        if values.astype(str).nunique() > 1:
            out.append(col)
    return out


TARGET_KEYS = ("client.target_epsilon", "server.target_epsilon", "secagg.server_target_epsilon")
NOISE_KEYS = ("client.noise_multiplier", "server.noise_multiplier")


def privacy_levels(trials: pd.DataFrame) -> list[str]:
    """The keys that set a trial's privacy level among those the sweep varied: its target epsilons, or
    without any, its noise multipliers (a calibrated multiplier follows its target, so targets come first)."""
    varied = varied_keys(trials)
    return [k for k in TARGET_KEYS if k in varied] or [k for k in NOISE_KEYS if k in varied]


def best_per_level(trials: pd.DataFrame) -> pd.DataFrame:
    """A recipe search's answer: per privacy level (:func:`privacy_levels`), the finished private trial with the
    best validation accuracy, its recipe (every other varied key), its epsilons and the test accuracy it
    publishes; ``trials``: how many were tried at that level. What looking at all of them costs is the
    sweep's release (``eps_sweep_*``), or ``eps_selected_*`` under a private selection."""
    done = trials[trials[CHOOSE].notna()] if CHOOSE in trials else trials.iloc[:0]
    if "status" in done:
        done = done[done["status"] == "TERMINATED"]
    private = done[[not _is_baseline(r) for _, r in done.iterrows()]] if len(done) else done
    if not len(private):
        return pd.DataFrame(columns=["trial_id", CHOOSE, REPORT])
    levels, recipe = privacy_levels(trials), [k for k in varied_keys(trials) if k not in privacy_levels(trials)]
    groups = private.groupby(levels, dropna=False, sort=True) if levels else [((), private)]
    rows = []
    for _, group in groups:
        best = group.loc[group[CHOOSE].idxmax()]
        rows.append({**{k: best[k] for k in levels}, **{c: best[c] for c in GUARANTEES if c in best.index},
                     **{k: best[k] for k in recipe if k not in NOISE_KEYS or not levels}, "trial_id": best["trial_id"],
                     CHOOSE: best[CHOOSE], REPORT: best[REPORT], "trials": len(group)})
    return pd.DataFrame(rows)


def _fmt(v) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def trial_labels(trials: pd.DataFrame) -> dict[str, str]:
    """``trial_id -> label`` naming what differs between the trials ("σ=1.2", "σ=2, C=0.5"; the noise
    multiplier when a single private trial leaves nothing to tell apart), "baseline (non-private)" for the
    non-private trial, "(ERROR)" appended to a trial that did not finish."""
    keys = varied_keys(trials) or [NOISE_LABELS[g][0] for g in varied_guarantees(trials)
                                   if NOISE_LABELS[g][0] in trials]  # one private trial: name its noise
    labels = {}
    for _, row in trials.iterrows():
        if _is_baseline(row):
            text = "baseline (non-private)"
        else:
            text = ", ".join(f"{KEY_LABELS.get(k, k)}={_fmt(row[k])}" for k in keys if pd.notna(row[k])) \
                or str(row["trial_id"])
        if "status" in row.index and row["status"] not in ("TERMINATED", None) and pd.notna(row["status"]):
            text += f" ({row['status']})"
        labels[str(row["trial_id"])] = text
    return labels


def _trial_order(trials: pd.DataFrame) -> list[str]:
    """Trial ids sorted by the varied keys' values (numbers ascending), the baseline last."""
    keys = varied_keys(trials)

    def key(row):
        vals = tuple((0, float(row[k])) if isinstance(row[k], (int, float)) and pd.notna(row[k]) else (1, str(row[k]))
                     for k in keys)
        return (_is_baseline(row), vals, str(row["trial_id"]))

    return [str(r["trial_id"]) for r in sorted((r for _, r in trials.iterrows()), key=key)]


def _trials_of(rounds: pd.DataFrame) -> pd.DataFrame:
    """One row per trial from the rounds table (its last round), when no trials table is at hand."""
    return rounds.sort_values("round").groupby("trial_id", sort=False).tail(1).reset_index(drop=True)


def rounds_figure(rounds: pd.DataFrame, trials: pd.DataFrame | None = None, *,
                  title: str = "Accuracy and privacy spent per round"):
    """Matplotlib figure: validation accuracy per round (top: what a stopping round may be chosen on; the
    test accuracy where a table has none) and epsilon per round (one panel per guarantee the sweep varied,
    log axis) for every trial, one line per trial in every panel that can show it, sharing the round axis.
    Non-private trials (epsilon = inf) appear in the accuracy panel only."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not len(rounds) or "trial_id" not in rounds:
        raise ValueError("the rounds table is empty (no trial reported a round)")
    trials = trials if trials is not None and len(trials) and "trial_id" in trials else _trials_of(rounds)
    trials = trials[trials["trial_id"].astype(str).isin(set(rounds["trial_id"].astype(str)))]
    labels, order = trial_labels(trials), _trial_order(trials)
    guarantees = varied_guarantees(rounds) or ["eps_record_max"]
    metric = CHOOSE if CHOOSE in rounds and rounds[CHOOSE].notna().any() else REPORT
    fig, axes = plt.subplots(1 + len(guarantees), 1, figsize=(8.5, 3.0 + 2.6 * len(guarantees)), sharex=True,
                             squeeze=False)
    axes = axes[:, 0]
    cmap = plt.get_cmap("tab10" if len(order) <= 10 else "viridis")
    for i, tid in enumerate(order):
        color = cmap(i % 10) if len(order) <= 10 else cmap(i / max(1, len(order) - 1))
        t = rounds[rounds["trial_id"].astype(str) == tid].sort_values("round")
        baseline = _is_baseline(trials[trials["trial_id"].astype(str) == tid].iloc[0])
        acc = t[t[metric].notna()] if metric in t else t.iloc[:0]
        axes[0].plot(acc["round"], acc[metric], marker="o", ms=3, lw=1.6, color=color,
                     ls="--" if baseline else "-", label=labels[tid])
        for ax, col in zip(axes[1:], guarantees):
            eps = t[np.isfinite(t[col].to_numpy(float))] if col in t else t.iloc[:0]
            if len(eps):
                ax.plot(eps["round"], eps[col], marker="o", ms=3, lw=1.6, color=color, label=labels[tid])
    axes[0].set_ylabel(metric.replace("_", " ").replace("val ", "validation "))
    axes[0].set_title(title)
    for ax, col in zip(axes[1:], guarantees):
        ax.set_yscale("log")
        ax.set_ylabel(f"ε, {GUARANTEES[col][0].split(' ')[0]}")
        if not ax.lines:
            ax.text(0.5, 0.5, "no finite ε in this sweep", transform=ax.transAxes, ha="center")
    for ax in axes:
        ax.grid(True, which="both", alpha=0.3)
    axes[-1].set_xlabel("round")
    axes[-1].xaxis.get_major_locator().set_params(integer=True)
    axes[0].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, title="trial", title_fontsize=8,
                   frameon=False)
    fig.tight_layout()
    return fig


def plot_rounds(rounds: pd.DataFrame, path: str | Path, trials: pd.DataFrame | None = None) -> Path:
    """Write :func:`rounds_figure` to ``path`` (PNG)."""
    import matplotlib.pyplot as plt

    fig = rounds_figure(rounds, trials)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda p: fig.savefig(p, dpi=120, bbox_inches="tight", format="png"))
    plt.close(fig)
    return path
