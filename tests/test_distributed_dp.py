"""DP-FedAvg under secure aggregation with distributed Skellam noise (privacy/mechanisms/distributed_dp.py): one round
through the real Bonawitz et al. protocol, the noise of the decoded sum (mu whatever the cohort and the
drop-outs), what each guarantee books, the Gaussian limit of the accounting, checkpoints and bad input. Ray-free."""

import math
import pickle

import numpy as np
import pytest
import torch

from privacy.accountants import accounting
from privacy.mechanisms.distributed_dp import (
    DistributedDPConfig, DistributedSkellamMechanism, client_rng, heuristic_scale)
from privacy.accountants.skellam import epsilon, epsilon_unsampled, skellam_event
from privacy.secagg.quantization import ring_sum, to_ring
from privacy.secagg.protocol import SecAggClient, SecAggConfig, SecAggServer
from privacy.accountants.skellam_rdp import gaussian_rdp
from privacy.accountants.subsampled_rdp import INTEGER_ORDERS, poisson_subsampled_rdp


def secure_sum(vectors: dict, *, bits: int, drop_before_masking=(), seed=0):
    """One secure-aggregation round on ring vectors: only protocol messages pass between the parties."""
    dim = len(next(iter(vectors.values())))
    cfg = SecAggConfig(dim=dim, bits=bits, threshold=max(2, len(vectors) // 2 + 1), session=b"round-%d" % seed)
    clients = {i: SecAggClient(i, cfg, entropy=b"dp-test-%d" % seed) for i in vectors}
    server = SecAggServer(cfg, graph_seed=seed)
    directory = server.collect_keys([c.advertise_keys() for c in clients.values()])
    forwarded = server.route_shares([c.share_keys(directory) for c in clients.values()])
    masked = [clients[i].masked_input(vectors[i], forwarded[i]) for i in forwarded if i not in drop_before_masking]
    survivors = server.collect_masked(masked)
    total, diag = server.unmask([clients[i].unmasking_shares(survivors) for i in sorted(survivors.ids)])
    return total, sorted(survivors.ids), diag


def client_deltas(n, dim, seed):
    rng = np.random.default_rng(seed)
    raw = rng.normal(size=(n, dim))
    return raw / np.linalg.norm(raw, axis=1, keepdims=True) * rng.uniform(0.3, 3.0, size=(n, 1))  # some clipped


def clipped(delta, clip):
    return delta * min(1.0, clip / np.linalg.norm(delta))


@pytest.mark.parametrize("dropped", [(), (2,)])
def test_one_round_through_secure_aggregation_is_the_exact_sum_and_decodes_to_the_clipped_average(dropped):
    n, dim = 6, 1000
    cfg = DistributedDPConfig(clip=1.0, noise_multiplier=0.5, expected_cohort=n, bits=20)
    mech = DistributedSkellamMechanism(cfg, dim=dim, noise_seed=11)
    step = mech.client_step(round_idx=3, cohort=n)
    deltas = client_deltas(n, dim, seed=1)
    updates = {i: step.constrain_sensitivity(torch.from_numpy(deltas[i]).float(),
                                             rng=client_rng(noise_seed=11, client_id=i, round_idx=3))
               for i in range(n)}

    total, survivors, diag = secure_sum({i: u.vector for i, u in updates.items()}, bits=cfg.bits,
                                        drop_before_masking=dropped)
    released = mech.release(total, survivors=len(survivors), cohort=n, round_idx=3)

    assert survivors == [i for i in range(n) if i not in dropped] and diag.survivors == n - len(dropped)
    np.testing.assert_array_equal(total, ring_sum([updates[i].vector for i in survivors], bits=cfg.bits))
    assert all(u.wrapped == 0 and u.rounded_norm <= mech.l2 for u in updates.values())
    assert [u.unclipped for u in updates.values()] == [bool(np.linalg.norm(d) <= 1.0) for d in deltas]
    assert released.noise.variance_clients == pytest.approx(mech.share(n) * len(survivors))
    assert released.noise.variance_present == mech.mu  # the server's top-up restores mu after a drop-out
    assert released.noise.near_edge <= 0.01 * len(total)  # 3 std and more: about 0.27 % when nothing wrapped
    truth = sum(clipped(deltas[i], cfg.clip) for i in survivors) / n  # fixed denominator m, survivors' deltas
    error = released.average.double().numpy() - truth
    rounding_var = len(survivors) / (4 * (mech.scale * n) ** 2)  # each client's rounding: variance <= 1/4 per coord
    rms = float(np.sqrt(np.mean(error ** 2)))
    assert 0.9 * released.noise.std <= rms <= 1.1 * math.sqrt(released.noise.std ** 2 + rounding_var)
    assert released.noise.std == pytest.approx(cfg.noise_multiplier * cfg.clip / n, rel=1e-9)  # z S / m, as trusted


def test_the_client_step_pickles_and_is_reproducible_from_its_seeds():
    mech = DistributedSkellamMechanism(DistributedDPConfig(clip=0.5, noise_multiplier=1.0, expected_cohort=4),
                                       dim=300, noise_seed=5)
    step = pickle.loads(pickle.dumps(mech.client_step(round_idx=0, cohort=4)))
    delta = np.random.default_rng(0).normal(size=300)

    a = step.constrain_sensitivity(delta, rng=client_rng(noise_seed=5, client_id=1, round_idx=0))
    b = step.constrain_sensitivity(delta, rng=client_rng(noise_seed=5, client_id=1, round_idx=0))
    c = step.constrain_sensitivity(delta, rng=client_rng(noise_seed=5, client_id=2, round_idx=0))

    assert a.vector.dtype == np.uint64 and a.vector.shape == (512,) and a.vector.max() < 2 ** 16
    np.testing.assert_array_equal(a.vector, b.vector)
    assert not np.array_equal(a.vector, c.vector)  # every client draws its own rounding and share
    assert a.norm == pytest.approx(np.linalg.norm(delta)) and not a.unclipped


def decoded_noise(mech, *, cohort: int, survivors: int, rounds: int = 4, share: float | None = None):
    """What the released average carries when every update is zero (so all of it is noise), and its std;
    ``share`` overrides the clients' share variance (the deliberate bug below)."""
    import dataclasses

    samples, stds = [], set()
    for r in range(rounds):
        step = mech.client_step(round_idx=r, cohort=cohort)
        if share is not None:
            step = dataclasses.replace(step, share_variance=share)
        vectors = [step.constrain_sensitivity(np.zeros(mech.dim), rng=client_rng(noise_seed=3, client_id=k,
                                                                                  round_idx=r)).vector
                   for k in range(survivors)]
        released = mech.release(ring_sum(vectors, bits=mech.config.bits), survivors=survivors, cohort=cohort,
                                round_idx=r)
        samples.append(released.average.double().numpy())
        stds.add(released.noise.std)
    return np.concatenate(samples), stds


def variance_is(noise: np.ndarray, expected_var: float, mu: float) -> bool:
    """The sample variance within 3 standard errors of ``expected_var`` (Skellam excess kurtosis 1/mu)."""
    return abs(noise.var() - expected_var) < 3 * expected_var * math.sqrt((2 + 1 / mu) / noise.size)


Z, CLIP, M = 1.3, 0.7, 8


@pytest.mark.parametrize("cohort,survivors", [(8, 8), (8, 6), (5, 5), (12, 9)])
def test_the_decoded_noise_has_variance_mu_whatever_the_cohort_and_the_dropouts(cohort, survivors):
    mech = DistributedSkellamMechanism(DistributedDPConfig(clip=CLIP, noise_multiplier=Z, expected_cohort=M, bits=18),
                                       dim=4096, noise_seed=3)

    noise, stds = decoded_noise(mech, cohort=cohort, survivors=survivors)

    (std,) = stds
    expected_var = (Z * CLIP / M) ** 2  # mu on the grid = (z s S)^2, decoded and divided by m: no cohort in it
    assert std ** 2 == pytest.approx(expected_var, rel=1e-9)
    assert variance_is(noise, expected_var, mech.mu)
    assert abs(noise.mean()) < 3 * math.sqrt(expected_var / noise.size)


def test_shares_sized_by_the_expected_cohort_would_reveal_the_cohort_and_the_check_catches_it():
    mech = DistributedSkellamMechanism(DistributedDPConfig(clip=CLIP, noise_multiplier=Z, expected_cohort=M, bits=18),
                                       dim=4096, noise_seed=3)
    expected_var = (Z * CLIP / M) ** 2

    for cohort in (5, 12):  # the bug: mu / m per client, so the sum carries mu n / m
        noise, _ = decoded_noise(mech, cohort=cohort, survivors=cohort, share=mech.mu / M)
        assert not variance_is(noise, expected_var, mech.mu)
        assert variance_is(noise, expected_var * cohort / M, mech.mu)  # the noise tells n apart


def test_the_public_event_books_mu_and_the_server_event_the_survivors_shares_less_colluders():
    cfg = DistributedDPConfig(clip=2.0, noise_multiplier=1.1, expected_cohort=10, bits=16, colluders=3)
    mech = DistributedSkellamMechanism(cfg, dim=777, noise_seed=0)

    released = mech.release(np.zeros(1024, dtype=np.uint64), survivors=9, cohort=12, round_idx=0)
    public, against_server = mech.event(released, sample_rate=0.1), mech.server_event(released)

    assert public == (mech.mu, mech.l1, mech.l2, 0.1, 1)
    assert mech.mu == pytest.approx((cfg.noise_multiplier * mech.scale * cfg.clip) ** 2, rel=1e-12)
    assert against_server == (pytest.approx(mech.mu / 12 * (9 - 3), rel=1e-12), mech.l1, mech.l2, 1.0, 1)
    assert mech.l2 >= mech.scale * cfg.clip  # sensitivities after rounding, on the integer grid
    alone = mech.release(np.zeros(1024, dtype=np.uint64), survivors=2, cohort=12, round_idx=0)
    assert mech.server_event(alone)[0] == pytest.approx(mech.mu / 12)  # at least the client's own share


def test_colluders_as_many_as_the_threshold_leave_a_client_its_own_share_alone():
    cfg = DistributedDPConfig(clip=1.0, noise_multiplier=1.0, expected_cohort=10, bits=16, colluders=3)
    mech = DistributedSkellamMechanism(cfg, dim=100, noise_seed=0)

    assert mech.mu_against_server(survivors=9, cohort=10, threshold=4) == pytest.approx(mech.mu * 6 / 10)
    assert mech.mu_against_server(survivors=9, cohort=10, threshold=3) == pytest.approx(mech.mu / 10)  # can unmask
    assert mech.server_event_for(survivors=9, cohort=10, threshold=2)[0] == pytest.approx(mech.mu / 10)


def test_dropouts_leave_the_public_epsilon_and_raise_the_one_against_the_server():
    cfg = DistributedDPConfig(clip=1.0, noise_multiplier=1.0, expected_cohort=20, bits=16)
    mech = DistributedSkellamMechanism(cfg, dim=2000, noise_seed=0)
    ring = np.zeros(2048, dtype=np.uint64)

    public, server = [], []
    for survivors in (20, 18, 15, 10):
        released = mech.release(ring, survivors=survivors, cohort=20, round_idx=0)
        public.append(epsilon([mech.event(released, sample_rate=0.05)] * 100, delta=1e-5))
        server.append(epsilon_unsampled([mech.server_event(released)] * 5, delta=1e-5))

    assert public == [public[0]] * 4
    assert server == sorted(server) and server[3] > 1.3 * server[0]


def test_a_cohort_outside_its_announcement_is_refused():
    mech = DistributedSkellamMechanism(DistributedDPConfig(clip=1.0, noise_multiplier=1.0, expected_cohort=4),
                                       dim=16, noise_seed=0)
    with pytest.raises(ValueError, match="survivors"):
        mech.release(np.zeros(16, dtype=np.uint64), survivors=5, cohort=4, round_idx=0)
    with pytest.raises(ValueError, match="cohort"):
        mech.client_step(round_idx=0, cohort=0)


def gaussian_zhu_wang_epsilon(z, q, steps, delta):
    """The same Zhu-Wang bound applied to the continuous Gaussian: the limit of the Skellam accounting."""
    one = poisson_subsampled_rdp(base_rdp=lambda ls: gaussian_rdp(variance=z * z, l2=1.0, orders=ls),
                                 sample_rate=q, orders=INTEGER_ORDERS)
    return accounting.rdp_to_epsilon(orders=INTEGER_ORDERS, rdp=one * steps, delta=delta)


@pytest.mark.parametrize("z,q,steps", [(1.0, 1.0, 10), (0.8, 0.05, 200)])
def test_as_the_scale_grows_epsilon_approaches_the_gaussian_from_above(z, q, steps):
    gaussian = accounting.epsilon([(z, q, steps)], delta=1e-5, accountant="pld")
    eps, loose, stds = [], [], []
    for scale in (10.0, 100.0, 1e3, 1e5):  # the noise stays z S in model units; only the grid gets finer
        cfg = DistributedDPConfig(clip=1.0, noise_multiplier=z, expected_cohort=10, bits=32, scale=scale)
        mech = DistributedSkellamMechanism(cfg, dim=1000, noise_seed=0)
        released = mech.release(np.zeros(1024, dtype=np.uint64), survivors=10, cohort=10, round_idx=0)
        stds.append(released.noise.std)
        eps.append(epsilon([mech.event(released, sample_rate=q)] * steps, delta=1e-5))
        loose.append(epsilon([mech.event(released, sample_rate=q)] * steps, delta=1e-5, accountant="zhu_wang"))

    assert stds == pytest.approx([z / 10] * 4, rel=1e-12)
    assert eps == sorted(eps, reverse=True) and eps[-1] >= gaussian
    assert eps[-1] == pytest.approx(gaussian, rel=2e-3)  # the exact accounting: the Gaussian's, from above
    assert loose == sorted(loose, reverse=True) and all(e <= lo for e, lo in zip(eps, loose))
    assert loose[-1] == pytest.approx(gaussian_zhu_wang_epsilon(z, q, steps, 1e-5), rel=1e-3)
    if q == 1:  # no subsampling: the Skellam RDP itself, whose loss is only RDP's conversion to (eps, delta)
        assert loose[-1] < 1.15 * gaussian
    else:  # Zhu-Wang's general bound (factor 3 on the l >= 3 terms) stays above the exact subsampled Gaussian
        assert loose[-1] > 1.1 * gaussian
    assert eps[0] > 2 * eps[-1]  # a coarse grid costs: Delta_2 after rounding >> s S


def test_events_are_plain_data_that_checkpoint_and_compose(tmp_path):
    cfg = DistributedDPConfig(clip=1.0, noise_multiplier=1.0, expected_cohort=10, bits=16)
    mech = DistributedSkellamMechanism(cfg, dim=100, noise_seed=0)
    events = [mech.event(mech.release(np.zeros(128, dtype=np.uint64), survivors=s, cohort=10, round_idx=0),
                         sample_rate=0.1) for s in (10, 10, 9)]
    path = tmp_path / "ledger.pt"

    torch.save({"events": events, "mechanism": mech.state_dict()}, path)
    back = torch.load(path, weights_only=True)

    assert [tuple(e) for e in back["events"]] == events
    assert epsilon(back["events"], delta=1e-5) == epsilon(events, delta=1e-5)
    assert epsilon(events[:2], delta=1e-5) == pytest.approx(
        epsilon([skellam_event(mu=events[0][0], l1=mech.l1, l2=mech.l2, sample_rate=0.1, steps=2)], delta=1e-5))
    assert epsilon([], delta=1e-5) == 0.0
    assert epsilon([skellam_event(mu=0.0, l1=1.0, l2=1.0, sample_rate=0.1)], delta=1e-5) == math.inf
    mech.load_state_dict(back["mechanism"])  # the same settings resume
    other = DistributedSkellamMechanism(DistributedDPConfig(clip=1.0, noise_multiplier=1.0, expected_cohort=10,
                                                            bits=20), dim=100, noise_seed=0)
    with pytest.raises(ValueError, match="same secagg settings"):
        other.load_state_dict(back["mechanism"])


def test_near_edge_counts_coordinates_where_wrapped_ones_land():
    mech = DistributedSkellamMechanism(DistributedDPConfig(clip=1.0, noise_multiplier=1.0, expected_cohort=4,
                                                           bits=8), dim=16, noise_seed=0)
    centred = np.array([0, 5, -5, 95, 96, -96, 127, -128] + [1] * 8)

    released = mech.release(to_ring(centred, bits=8)[0], survivors=4, cohort=4, round_idx=0)

    assert released.noise.near_edge == 4  # 96, -96, 127, -128: |v| >= 0.75 * 128


@pytest.mark.parametrize("kwargs,match", [
    (dict(bits=4, expected_cohort=100), "too few for a cohort of 100"),
    (dict(colluders=10), "colluders"),
    (dict(colluders=-1), "colluders"),
    (dict(clip=0.0), "clip"),
    (dict(noise_multiplier=-1.0), "noise_multiplier"),
    (dict(beta=1.0), "beta"),
    (dict(expected_cohort=1), "clients_per_round"),
])
def test_bad_config_is_one_clear_value_error(kwargs, match):
    base = dict(clip=1.0, noise_multiplier=1.0, expected_cohort=10, bits=16)

    with pytest.raises(ValueError, match=match) as err:
        DistributedDPConfig(**{**base, **kwargs})

    assert "\n" not in str(err.value)


def test_an_explicit_scale_that_overflows_the_ring_is_refused():
    cfg = DistributedDPConfig(clip=1.0, noise_multiplier=1.0, expected_cohort=100, bits=12, scale=1e4)

    with pytest.raises(ValueError, match="overflows 2\\^12"):
        DistributedSkellamMechanism(cfg, dim=1000, noise_seed=0)
    fitted = heuristic_scale(bits=12, clip=1.0, noise_std=cfg.noise_std, expected_cohort=100,
                             dim=1024, k_stddevs=4.0)
    assert DistributedSkellamMechanism(DistributedDPConfig(clip=1.0, noise_multiplier=1.0, expected_cohort=100,
                                                           bits=12), dim=1000, noise_seed=0).scale == fitted
