"""Comparing a round table with a golden one written on another machine: exact where the value is exact maths
given the same inputs, a stated tolerance where it comes out of float kernels of training.

Torch's CPU kernels are not bit-identical across processors (instruction sets, thread counts), so a loss
differs in its 7th digit and, now and then, one test image lands on the other side of a decision boundary.
Everything the ledgers compute (epsilons, deltas, noise multipliers) depends only on the config, the seeds
and the sampling: the same maths on every machine, but numpy's and scipy's vectorised exp, log and FFT
kernels round differently on different instruction sets, so these floats must agree to ``LEDGER_RTOL`` (a
few units in the last place; a wrong epsilon is off by far more). Counts, failures, strings and every
config column must match exactly.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

TEST_EXAMPLES = 3  # accuracy may differ by this many test images (a few images near a decision boundary)
REL = 1e-3  # continuous functions of the trained weights: losses, norms, adaptive clip, noise std, SNR
CANARY_GUESSES = 3  # the one-run audit's counts may differ by a few guesses (scores near the cut-off)
LEDGER_RTOL = 1e-10  # the ledgers' floats: the last bits of library kernels (6.525566701020805 vs ...8045 seen)

# column -> (kind, reason); kinds: "accuracy", "rel", "one_client" (a fraction of the cohort's clip bits),
# "guesses" (audit counts), "audit_eps", "auc"; any other float column but a config one ("section.key") is a
# ledger's (LEDGER_RTOL), the rest exact
TRAINING_COLUMNS: dict[str, str] = {
    "test_accuracy": "accuracy", "test_loss": "rel",
    "val_accuracy": "val_accuracy", "val_loss": "rel", "train_loss": "rel", "delta_norm_median": "rel",
    "update_norm": "rel", "server_snr": "rel", "clip_server": "rel", "server_noise_std": "rel",
    "unclipped_fraction": "one_client", "unclipped_fraction_noised": "one_client",
    "audit_guesses": "guesses", "audit_correct": "guesses", "eps_audit_lower": "audit_eps", "mia_auc": "auc",
}


def tolerance(kind: str, *, n_test: int, cohort: float, n_validation: int = 0) -> tuple[float, float]:
    """(rtol, atol) of a kind of training column."""
    return {"accuracy": (0.0, TEST_EXAMPLES / n_test + 1e-12),
            "val_accuracy": (0.0, TEST_EXAMPLES / max(n_validation, 1) + 1e-12),  # as many validation images
            "rel": (REL, 1e-9),
            "one_client": (0.0, 1.0 / max(cohort, 1.0) + 1e-12),
            "guesses": (0.0, CANARY_GUESSES),
            "audit_eps": (0.0, 0.5),  # a few guesses more or fewer move the one-run audit's bound by tenths
            "auc": (0.0, 0.01)}[kind]


def assert_matches_golden(table: pd.DataFrame, golden: pd.DataFrame, *, n_test: int, n_validation: int = 0) -> None:
    """AssertionError naming the first column that differs beyond what it may (see the module docstring)."""
    assert list(table.index) == list(golden.index), "a different number of rounds"
    cohort = float(golden["clients_sampled"].min()) if "clients_sampled" in golden else 1.0
    for col in golden.columns:
        got, want = table[col], golden[col]
        kind = TRAINING_COLUMNS.get(col)
        ledger_float = "." not in col and pd.api.types.is_float_dtype(got) and pd.api.types.is_float_dtype(want)
        if kind is None and not ledger_float:  # config columns ("server.clip") are the config's own values
            pd.testing.assert_series_equal(got, want, check_exact=True, obj=f"column {col!r} (exact)")
            continue
        if kind is None:  # a ledger's float: equal but for the last bits of library kernels
            pd.testing.assert_series_equal(got, want, check_exact=False, rtol=LEDGER_RTOL, atol=0.0,
                                           obj=f"column {col!r} (ledger, rtol {LEDGER_RTOL:g})")
            continue
        rtol, atol = tolerance(kind, n_test=n_test, cohort=cohort, n_validation=n_validation)
        a, b = got.to_numpy(dtype=float), want.to_numpy(dtype=float)
        same_nan = np.isnan(a) == np.isnan(b)
        close = np.isclose(a, b, rtol=rtol, atol=atol) | (np.isnan(a) & np.isnan(b))
        assert same_nan.all() and close.all(), (
            f"column {col!r} ({kind}: rtol {rtol:g}, atol {atol:g}) differs: got {a.tolist()}, golden {b.tolist()}")


def perturbed(golden: pd.DataFrame, *, n_test: int, fraction: float = 0.9, seed: int = 0,
              n_validation: int = 0) -> pd.DataFrame:
    """The golden table with every training column moved by ``fraction`` of its tolerance, in a random
    direction per cell (what another CPU may give)."""
    rng = np.random.default_rng(seed)
    out = golden.copy()
    cohort = float(golden["clients_sampled"].min())
    for col, kind in TRAINING_COLUMNS.items():
        if col not in out:
            continue
        rtol, atol = tolerance(kind, n_test=n_test, cohort=cohort, n_validation=n_validation)
        v = out[col].to_numpy(dtype=float)
        step = fraction * (atol + rtol * np.abs(v)) * rng.choice([-1.0, 1.0], size=v.shape)
        out[col] = np.where(np.isnan(v), v, v + step)
    return out
