"""The one-run canary audit (Steinke, Nasr, Jagielski 2023) of DP-FedAvg under secure aggregation with
distributed Skellam noise, Ray-free: the audited lower bound stays below the mechanism's own claim, and a
deliberate bug -- clients drop their noise shares while the ledger still books mu -- is caught.

T rounds on a d = 4096 model: N real clients, Poisson-sampled at q, send small random updates; 1000
canaries (privacy.audit.canaries, each in the federation with probability 1/2, then Poisson-sampled at q) send
S u_j. Every update goes through the client half of the mechanism (clip, scale, rotate, round, share, mod
2^b) and the server half decodes the ring sum. Canaries add no noise share and are not counted as
survivors: the claim books only the real clients' shares, so the noise in the sum is exactly what is
claimed. The secure-aggregation masking is skipped here (the ring vectors are summed mod 2^b directly):
tests/test_distributed_dp.py checks that the unmasked sum of the real protocol equals that sum exactly,
with and without drop-outs, so masking cannot change what the audit sees.

z = 5, q = 1/2, T = 10 claims about 1.4 at the audit's delta (2.5e-6): a one-run audit with 1000 canaries
cannot certify more than 5.3 (all 1000 guesses right; ~3.5 with the 1-2 % of included canaries that the
sampling leaves in at most one round), so a claim at z = 1-2 (eps 7-15 here) could never be caught; at
z = 5 the noiseless bug separates the canaries almost perfectly and the bound clears the claim by ~1.
"""

from functools import lru_cache

import numpy as np
import torch

from privacy.audit.one_run import audit_delta, one_run_audit
from privacy.audit.canaries import Canaries
from privacy.mechanisms.distributed_dp import (
    DistributedDPConfig, DistributedSkellamMechanism, client_rng, without_noise)
from privacy.accountants.skellam import epsilon
from privacy.secagg.quantization import ring_sum

DIM, CLIENTS, RATE, ROUNDS, CANARIES = 4096, 40, 0.5, 10, 1000
CLIP, Z, BITS, DELTA = 1.0, 5.0, 16, 1e-5
NOISE_SEED, CANARY_SEED = 20240, 7


def real_update(k: int, round_idx: int) -> np.ndarray:
    """A small random update: norm uniform in [0, 2 S), so about half of them get clipped."""
    rng = np.random.default_rng([CANARY_SEED, 1, k, round_idx])
    v = rng.normal(size=DIM)
    return v / np.linalg.norm(v) * rng.uniform(0, 2 * CLIP)


@lru_cache(maxsize=1)
def canary_directions() -> np.ndarray:
    """S u_j for every canary, dense (1000 x 4096 float64): Canaries.dense_direction's torch scatter is slow."""
    canaries = Canaries(CANARIES, DIM, seed=CANARY_SEED, sample_rate=RATE)
    out = np.zeros((CANARIES, DIM))
    for j in range(CANARIES):
        coords, vals = canaries.direction(j)
        out[j, coords.numpy()] = vals.double().numpy() * CLIP
    return out


def simulate(*, drop_noise_shares: bool):
    """T rounds of DP-FedAvg through the distributed mechanism; returns (audit result, claimed epsilon)."""
    mech = DistributedSkellamMechanism(
        DistributedDPConfig(clip=CLIP, noise_multiplier=Z, expected_cohort=int(CLIENTS * RATE), bits=BITS),
        dim=DIM, noise_seed=NOISE_SEED)
    canaries, directions = Canaries(CANARIES, DIM, seed=CANARY_SEED, sample_rate=RATE), canary_directions()
    change, events = torch.zeros(DIM, dtype=torch.float64), []
    for r in range(ROUNDS):
        cohort = np.flatnonzero(np.random.default_rng([NOISE_SEED, 2, r]).random(CLIENTS) < RATE)
        step = mech.client_step(round_idx=r, cohort=len(cohort))
        real_step = without_noise(step) if drop_noise_shares else step  # the bug: no share, still booked
        vectors = [real_step.constrain_sensitivity(real_update(k, r),
                                                   rng=client_rng(noise_seed=NOISE_SEED, client_id=k, round_idx=r))
                   .vector for k in cohort]
        for j in canaries.participants(r):  # S u_j, quantised like any update, no noise share
            vectors.append(without_noise(step).constrain_sensitivity(
                directions[j], rng=np.random.default_rng([CANARY_SEED, 3, int(j), r])).vector)
        released = mech.release(ring_sum(vectors, bits=BITS), survivors=len(cohort), cohort=len(cohort), round_idx=r)
        assert released.noise.near_edge <= 0.01 * DIM  # no wrap-around distorts the audit
        change += released.average.double()
        events.append(mech.event(released, sample_rate=RATE))
    audit_at = audit_delta(canaries=CANARIES, delta=DELTA)
    result = one_run_audit(canaries.scores(change), canaries.included, delta=audit_at)
    return result, epsilon(events, delta=audit_at)


def test_the_audited_lower_bound_stays_below_the_claim_under_secure_aggregation():
    result, claimed = simulate(drop_noise_shares=False)

    assert result.canaries == CANARIES and 400 < result.included < 600
    assert 1.0 < claimed < 3.5  # within reach of a 1000-canary audit, so the next test can catch a bug
    assert result.eps_lower < claimed


def test_clients_that_drop_their_noise_shares_are_caught():
    result, claimed = simulate(drop_noise_shares=True)  # the ledger still books survivors x share

    assert result.eps_lower > claimed + 0.5
    assert result.correct / result.guesses > 0.95
