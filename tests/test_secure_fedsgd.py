"""Record-level DP across silos under secure aggregation (secagg.level = "record", privacy/mechanisms/distributed_dpsgd.py),
Ray-free: the coupled rounding's sensitivity and unbiasedness, decoding the silos' sum, the noise in it, what a
silo's records book, the ledger, calibration, and a client actor's clipped-gradient sum."""

import dataclasses
import math

import numpy as np
import pytest
import torch

from privacy.accountants.skellam import epsilon, skellam_event
from privacy.mechanisms.distributed_dpsgd import (DistributedDPSGD, DistributedDPSGDConfig, coupled_l2_sensitivity,
                                       expected_batch, from_experiment)
from privacy.secagg.quantization import from_ring, ring_sum, rounded_l1_bound, unrotate
from privacy.accountants import accounting

SIGMA, CLIP, SILOS, BATCH = 1.0, 1.0, 4, 100.0


def mechanism(*, dim=1000, noise_seed=3, **kwargs) -> DistributedDPSGD:
    base = dict(clip=CLIP, noise_multiplier=SIGMA, silos=SILOS, expected_batch=BATCH, bits=24)
    return DistributedDPSGD(DistributedDPSGDConfig(**{**base, **kwargs}), dim=dim, noise_seed=noise_seed)


def noiseless(step):
    return dataclasses.replace(step, share_variance=0.0)


def gradient_sum(rng, n, dim, clip=CLIP):
    """sum_i clip_C(g_i) of ``n`` random per-sample gradients (some above the clip, some below), and the g_i."""
    g = rng.normal(size=(n, dim)) * rng.uniform(0.2, 3.0, size=(n, 1)) / math.sqrt(dim)
    clipped = g * np.minimum(1.0, clip / np.linalg.norm(g, axis=1, keepdims=True))
    return clipped.sum(0), clipped


def on_grid(ring_vector, bits):
    return from_ring(ring_vector, bits=bits).astype(np.int64)


class FixedU:
    """An rng whose uniform draws are a chosen U and whose Poisson draws are 0 (a noiseless step's share)."""

    def __init__(self, u):
        self.u = u

    def random(self, shape):
        return np.broadcast_to(self.u, shape).copy()

    def poisson(self, lam, size):
        assert lam == 0
        return np.zeros(size, dtype=np.int64)


# --- 1. the coupled rounding's sensitivity ------------------------------------------------------------------
def test_coupled_rounding_moves_neighbours_by_at_most_the_booked_sensitivities():
    rng = np.random.default_rng(0)
    draws, d = 4000, 37
    y = rng.uniform(-20, 20, size=(draws, d))
    direction = rng.normal(size=(draws, d))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    L = rng.uniform(0, 12, size=(draws, 1))  # includes tiny moves, where rounding dominates
    y2 = y + direction * L * rng.uniform(0, 1, size=(draws, 1))
    u = rng.random((draws, d))  # the same U in both worlds
    diff = np.floor(y + u) - np.floor(y2 + u)

    l2_bound = np.array([coupled_l2_sensitivity(l2=float(v), dim=d) for v in L[:, 0]])
    l1_bound = np.array([rounded_l1_bound(l2=b, dim=d) for b in l2_bound])
    assert np.all(np.linalg.norm(diff, axis=1) <= l2_bound + 1e-9)
    assert np.all(np.abs(diff).sum(1) <= l1_bound + 1e-9)
    assert np.all(np.abs(diff) < np.abs(y - y2) + 1)  # coordinate-wise, the fact the bound rests on
    assert coupled_l2_sensitivity(l2=3.0, dim=16) == 7.0


def test_neighbouring_gradient_sums_encoded_with_the_same_draws_stay_within_the_mechanisms_sensitivity():
    """Through SkellamGradientStep.encode (rotation on): one record's clipped gradient removed, the silo's draws
    the same (same rng seed), the two grid vectors differ by at most mech.l2 in L2 and mech.l1 in L1."""
    dim = 300
    for scale in (0.5, 5.0, 500.0):  # coarse grids, where sqrt(d) matters, and a fine one
        mech = mechanism(dim=dim, scale=scale)
        step = noiseless(mech.client_step(round_idx=2))
        rng = np.random.default_rng(int(scale * 10))
        for t in range(40):
            total, per_sample = gradient_sum(rng, 12, dim)
            neighbour = total - per_sample[t % 12]
            a = on_grid(step.encode(total, rng=np.random.default_rng(t)).vector, mech.config.bits)
            b = on_grid(step.encode(neighbour, rng=np.random.default_rng(t)).vector, mech.config.bits)
            assert np.linalg.norm(a - b) <= mech.l2 + 1e-9
            assert np.abs(a - b).sum() <= mech.l1 + 1e-9
    assert mech.l2 == pytest.approx(mech.scale * CLIP + math.sqrt(mech.grid_dim), rel=1e-12)
    assert mech.l1 == pytest.approx(rounded_l1_bound(l2=mech.l2, dim=mech.grid_dim), rel=1e-12)


def test_a_worst_case_record_reaches_the_coupled_bound_not_the_clip_alone():
    """x = C / sqrt(d) in every coordinate against x' = 0, s C / sqrt(d) = 1 + eps, and a U of 1 - eps / 2: every
    coordinate rounds 2 apart, ||.|| = 2 sqrt(d), almost s C + sqrt(d) = (2 + eps) sqrt(d) and far above s C."""
    d, eps = 256, 0.02
    scale = math.sqrt(d) * (1 + eps) / CLIP
    mech = mechanism(dim=d, scale=scale, rotate=False, bits=32)
    step = noiseless(mech.client_step(round_idx=0))
    x = np.full(d, CLIP / math.sqrt(d))
    u = 1 - eps / 2
    a = on_grid(step.encode(x, rng=FixedU(u)).vector, 32)
    b = on_grid(step.encode(np.zeros(d), rng=FixedU(u)).vector, 32)
    moved_l2, moved_l1 = float(np.linalg.norm(a - b)), float(np.abs(a - b).sum())

    assert np.linalg.norm(x) == pytest.approx(CLIP)  # a legitimate record: its gradient has the clip's norm
    assert moved_l2 <= mech.l2 and moved_l1 <= mech.l1
    assert moved_l2 > 0.99 * mech.l2  # the bound is tight ...
    assert moved_l2 > 1.9 * mech.scale * CLIP  # ... and s C alone (the unrounded sensitivity) would be wrong
    assert moved_l1 > 0.99 * mech.l1


# --- 2. unbiased rounding -------------------------------------------------------------------------------------
def test_rounding_is_unbiased_on_the_grid():
    mech = mechanism(dim=32, scale=1.0, rotate=False, bits=32)
    step = noiseless(mech.client_step(round_idx=0))
    y = np.random.default_rng(1).uniform(-5, 5, size=32)
    n = 5000
    draws = np.stack([on_grid(step.encode(y, rng=np.random.default_rng(10_000 + i)).vector, 32) for i in range(n)])
    frac = y - np.floor(y)

    assert set(np.unique(draws - np.floor(y))) == {0, 1}  # floor(y) or floor(y) + 1
    standard_error = np.sqrt(frac * (1 - frac) / n)
    assert np.all(np.abs(draws.mean(0) - y) < 4.5 * standard_error)  # 32 coordinates, 4.5 s.e. each


def test_rounding_through_the_rotation_is_unbiased_in_model_units():
    """A coarse grid (s = 3) so that a biased rounding (nearest, or floor) would show: the mean of the decoded
    sums over many draws approaches the gradient sum."""
    dim, n, s = 100, 3000, 3.0
    mech = mechanism(dim=dim, scale=s)
    step = noiseless(mech.client_step(round_idx=1))
    x = np.random.default_rng(2).normal(size=dim)
    decoded = np.stack([unrotate(on_grid(step.encode(x, rng=np.random.default_rng(i)).vector, 24) / s, dim=dim,
                                 seed=step.rotation_seed) for i in range(n)])

    standard_error = 0.5 / (s * math.sqrt(n))  # grid rounding variance <= 1/4; the rotation is orthonormal
    assert np.all(np.abs(decoded.mean(0) - x) < 4.5 * standard_error)
    assert np.abs(decoded - x).max() > 0.05 / s  # and the draws themselves are not exact


# --- 3. decoding the silos' sum -------------------------------------------------------------------------------
@pytest.mark.parametrize("rotate", [True, False])
def test_the_released_step_is_minus_the_pooled_clipped_gradient_sum_over_the_expected_batch(rotate):
    dim, sizes = 1000, (20, 30, 25, 25)
    mech = mechanism(dim=dim, rotate=rotate, expected_batch=float(sum(sizes)))
    step = noiseless(mech.client_step(round_idx=7))
    rng = np.random.default_rng(3)
    sums = [gradient_sum(rng, n, dim)[0] for n in sizes]
    vectors = [step.encode(torch.from_numpy(g).float() if k % 2 else g, rng=np.random.default_rng(k)).vector
               for k, g in enumerate(sums)]

    released = mech.release(ring_sum(vectors, bits=24), survivors=SILOS, round_idx=7)
    truth = -np.sum(sums, axis=0) / sum(sizes)
    error = float(np.linalg.norm(released.average.double().numpy() - truth))

    # each silo's rounding moves each grid coordinate by less than 1: ||.|| < K sqrt(d_padded) on the grid, the
    # unrotation is an isometry; float32 inputs (odd silos) and the float32 average add relative 2^-24 each.
    rounding = SILOS * math.sqrt(mech.grid_dim) / (mech.scale * sum(sizes))
    floats = 2 ** -24 * (np.linalg.norm(truth) + rounding + sum(np.linalg.norm(g) for g in sums) / sum(sizes))
    assert error <= rounding + floats
    assert rounding + floats < 1e-3 * np.linalg.norm(truth)  # the tolerance is far below the signal
    assert released.noise.near_edge == 0 and released.noise.survivors == SILOS
    assert mech.grid_dim == (1024 if rotate else dim)


def test_the_expected_batch_is_the_sum_of_rates_times_sizes():
    assert expected_batch([0.5, 0.1, 1.0], [100, 50, 7]) == pytest.approx(50 + 5 + 7)


# --- 4. the noise in the sum ----------------------------------------------------------------------------------
@pytest.mark.parametrize("survivors", [4, 3])
def test_the_sum_of_the_shares_carries_mu_booked(survivors):
    dim, rounds = 4096, 3
    mech = mechanism(dim=dim)
    samples, decoded = [], []
    for r in range(rounds):
        step = mech.client_step(round_idx=r)
        vectors = [step.encode(np.zeros(dim), rng=np.random.default_rng(100 * r + k)).vector for k in range(survivors)]
        total = ring_sum(vectors, bits=24)
        samples.append(on_grid(total, 24))
        released = mech.release(total, survivors=survivors, cohort=SILOS, round_idx=r)
        decoded.append(released.average.double().numpy())
    noise = np.concatenate(samples).astype(float)
    booked = mech.mu_booked(survivors)

    assert booked == pytest.approx(survivors * mech.share, rel=1e-12) and mech.share == mech.mu / SILOS
    standard_error = booked * math.sqrt((2 + 1 / booked) / noise.size)  # Skellam excess kurtosis 1 / mu
    assert abs(noise.var() - booked) < 3 * standard_error
    assert abs(noise.mean()) < 3 * math.sqrt(booked / noise.size)
    assert released.noise.variance_present == pytest.approx(booked, rel=1e-12)
    assert released.noise.std == pytest.approx(math.sqrt(booked) / (mech.scale * BATCH), rel=1e-12)
    model_noise = np.concatenate(decoded)
    assert abs(model_noise.var() / released.noise.std ** 2 - 1) < 3 * math.sqrt(2.1 / model_noise.size)
    assert mech.mu_booked(SILOS) == pytest.approx(mech.mu, rel=1e-12)  # all K silos carry mu
    assert mech.mu == pytest.approx((SIGMA * mech.scale * CLIP) ** 2, rel=1e-12)


# --- 5. what a silo's records book ----------------------------------------------------------------------------
def test_the_booked_event_counts_every_survivors_share_and_not_the_data():
    dim = 500
    mech = mechanism(dim=dim)
    step = mech.client_step(round_idx=0)
    rng = np.random.default_rng(4)
    events = []
    for world in range(2):  # two different sets of gradients: one record cannot move what is booked
        vectors = [step.encode(gradient_sum(rng, 10 + world * 7, dim)[0], rng=np.random.default_rng(k)).vector
                   for k in range(SILOS)]
        released = mech.release(ring_sum(vectors, bits=24), survivors=SILOS, round_idx=0)
        events.append(mech.event(released, sample_rate=0.2))

    assert events[0] == events[1]
    assert events[0] == skellam_event(mu=mech.mu_booked(SILOS), l1=mech.l1, l2=mech.l2, sample_rate=0.2)
    assert events[0][0] == pytest.approx(SILOS * mech.share, rel=1e-12)  # the silo's own share counts too
    assert events[0][0] > (SILOS - 0.5) * mech.share  # not the client-level (survivors - 1) shares
    assert events[0][0] == pytest.approx(mech.planned_event(sample_rate=0.2)[0], rel=1e-12)


def test_fewer_survivors_book_less_noise_and_a_larger_epsilon():
    mech = mechanism(dim=500)
    zero = np.zeros(mech.grid_dim, dtype=np.uint64)
    mus, eps = [], []
    for survivors in (4, 3, 2, 1):
        event = mech.event(mech.release(zero, survivors=survivors, round_idx=0), sample_rate=0.1)
        mus.append(event[0])
        eps.append(epsilon([event] * 50, delta=1e-5))

    assert mus == pytest.approx([mech.share * k for k in (4, 3, 2, 1)], rel=1e-12)
    assert eps == sorted(eps) and len(set(eps)) == 4
    assert math.isfinite(eps[-1])  # a lone survivor's records still have its own share


@pytest.mark.parametrize("sigma,q,steps", [(1.0, 0.05, 200), (2.0, 0.2, 50)])
def test_as_the_scale_grows_the_accounting_tends_to_the_gaussian_from_above(sigma, q, steps):
    gaussian = accounting.epsilon([(sigma, q, steps)], delta=1e-5, accountant="pld")
    multipliers, eps = [], []
    for scale in (3.0, 30.0, 300.0, 1e4, 4e5):  # mu = (sigma s C)^2 stays within what the accountant evaluates
        mech = mechanism(dim=1000, noise_multiplier=sigma, scale=scale, bits=32)
        multipliers.append(mech.effective_noise_multiplier)
        eps.append(epsilon([mech.planned_event(sample_rate=q)[:4] + (steps,)], delta=1e-5))

    assert multipliers == sorted(multipliers) and all(m < sigma for m in multipliers)
    assert multipliers[-1] == pytest.approx(sigma, rel=1e-4)  # s C = 4e5 against sqrt(1024) = 32
    assert multipliers[0] < 0.2 * sigma  # s C = 3 against sqrt(1024) = 32: the rounding dominates
    assert eps == sorted(eps, reverse=True) and all(e >= gaussian for e in eps)
    assert eps[-1] == pytest.approx(gaussian, rel=1e-3)
    assert eps[0] > 2 * eps[-1]


def test_more_bits_bring_the_heuristic_scale_s_multiplier_up_to_sigma():
    multipliers = [mechanism(dim=6000, bits=b).effective_noise_multiplier for b in (12, 16, 20, 24, 28)]

    assert multipliers == sorted(multipliers) and multipliers[-1] < SIGMA
    assert multipliers[-1] == pytest.approx(SIGMA, rel=1e-3)


# --- 6. the ledger --------------------------------------------------------------------------------------------
RECORD = ["data.dataset=digits", "data.num_clients=4", "server.clients_per_round=4", "secagg.enabled=true",
          "secagg.level=record", "secagg.bits=24", "client.local_steps=1", "client.max_grad_norm=0.5",
          "client.batch_size=64", "run.noise_seed=2"]
RATES = (0.1, 0.2, 0.15, 0.1)


def record_ledgers(*extra):
    from privacy.config.experiment import load_config

    cfg = load_config(overrides=RECORD + ["client.delta=1e-5", "server.delta=0.1", *extra])
    return from_experiment(cfg, dim=1000, batch=BATCH).ledgers(cfg, sample_rates=RATES, steps=[1] * 4), cfg


def test_the_ledger_books_each_released_silo_and_only_it():
    book, cfg = record_ledgers()
    mech = from_experiment(cfg, dim=1000, batch=BATCH)
    event = {k: mech.planned_event(sample_rate=q) for k, q in enumerate(RATES)}

    record = book.guarantees["record"]
    book.book_cohort([0, 1, 2, 3])  # under secure FedSGD nothing is booked at dispatch
    assert record.histories == {} and book.eps_record_max() == 0.0
    book.book({"record": {0: event[0], 2: event[2]}})  # silos 1 and 3 not in the sum
    book.book({"record": {0: event[0]}})

    expected = [epsilon([event[0]] * 2, delta=1e-5), 0.0, epsilon([event[2]], delta=1e-5), 0.0]
    assert [record.epsilon(k) for k in range(4)] == pytest.approx(expected, rel=1e-12)
    assert book.eps_record_max() == pytest.approx(max(expected), rel=1e-12)
    assert book.eps_client() == math.inf and book.eps_client_server_max() != book.eps_client_server_max()  # NaN
    assert record.histories == {0: (event[0][:4] + (2,),), 2: (event[2],)}  # merged: steps summed


def test_the_budget_stop_fires_before_the_worst_silo_passes_its_target():
    target = 3.0
    book, cfg = record_ledgers(f"client.target_epsilon={target}", "client.noise_multiplier=2.0")
    mech = from_experiment(cfg, dim=1000, batch=BATCH)
    planned = [mech.planned_event(sample_rate=q) for q in RATES]  # what the mechanism planned the ledger with
    rounds = 0
    while not book.budget_exceeded_next_round() and rounds < 10_000:
        book.book({"record": dict(enumerate(planned))})
        rounds += 1

    worst = planned[1]  # the highest rate
    assert 1 <= rounds < 10_000
    assert epsilon([worst] * rounds, delta=1e-5) <= target < epsilon([worst] * (rounds + 1), delta=1e-5)
    assert "record-level epsilon" in book.budget_exceeded_next_round()
    assert book.eps_record_max() == pytest.approx(epsilon([worst] * rounds, delta=1e-5), rel=1e-12)
    assert book.eps_record_max() > epsilon([planned[0]] * rounds, delta=1e-5)

    no_target, _ = record_ledgers()
    for _ in range(rounds + 5):
        no_target.book({"record": dict(enumerate(planned))})
    assert no_target.budget_exceeded_next_round() == ""


def test_the_record_histories_and_epsilons_survive_a_checkpoint(tmp_path):
    book, cfg = record_ledgers()
    mech = from_experiment(cfg, dim=1000, batch=BATCH)
    zero = np.zeros(mech.grid_dim, dtype=np.uint64)
    for survivors, ids in ((4, (0, 1, 2, 3)), (3, (0, 1, 2)), (4, (0, 1, 2, 3))):
        released = mech.release(zero, survivors=survivors, round_idx=0)
        book.book({"record": {k: mech.event(released, sample_rate=RATES[k]) for k in ids}})
    torch.save(book.state_dict(), tmp_path / "ledgers.pt")

    restored, _ = record_ledgers()
    restored.load_state_dict(torch.load(tmp_path / "ledgers.pt", weights_only=True))

    before, after = book.guarantees["record"], restored.guarantees["record"]
    eps = [before.epsilon(k) for k in range(4)]
    assert after.histories == before.histories
    assert [after.epsilon(k) for k in range(4)] == eps
    assert len(set(eps)) == 4 and all(eps)  # rates and histories differ
    assert restored.eps_record_max() == book.eps_record_max()


# --- 7. calibration -------------------------------------------------------------------------------------------
def test_the_calibrated_sigma_spends_the_target_over_the_rounds():
    from actors.model_inputs import load_from_config
    from orchestrator.resolve import count_parameters, resolve_config
    from privacy.config.experiment import load_config

    target, rounds = 2.0, 8
    plan = resolve_config(load_config(overrides=RECORD + [f"client.target_epsilon={target}", f"server.rounds={rounds}",
                                                          "data.partition=dirichlet", "data.alpha=0.3"]),
                          capacity=(2.0, 0.0))  # silos of unequal sizes: the worst silo's rate must meet the target
    cfg = plan.config
    dim = count_parameters(cfg.model.name, load_from_config(cfg.data))
    batch = expected_batch(plan.clients.sample_rate, plan.clients.sizes)

    def spent(sigma, rates=plan.clients.sample_rate):
        mech = from_experiment(cfg.replace(client={"noise_multiplier": sigma}), dim=dim, batch=batch)
        return max(epsilon([mech.planned_event(sample_rate=q)[:4] + (rounds,)], delta=cfg.client.delta)
                   for q in rates)

    sigma = cfg.client.noise_multiplier
    assert plan.clients.sizes == tuple(int(n) for n in plan.partition.sizes) and sum(plan.clients.sizes) == plan.n_train
    assert batch == pytest.approx(sum(min(64, n) for n in plan.clients.sizes))
    assert 0.98 * target <= spent(sigma) <= target
    assert spent(0.98 * sigma) > target  # the smallest sigma that meets it, to 2 %
    assert spent(sigma, [min(plan.clients.sample_rate)]) < 0.8 * target  # the other silos spend less
    assert cfg.audit.canaries == 0


# --- 8. a client actor's clipped-gradient sum ----------------------------------------------------------------
def test_a_silos_ring_vector_decodes_to_the_clipped_gradient_sum_of_its_poisson_sample():
    import torch.nn.functional as F
    from torch.nn.utils import vector_to_parameters

    from actors.client import ClientActor, initial_weights
    from actors.model_inputs import load_from_config
    from actors.models import build_model
    from actors.secure_step import SecureStep
    from orchestrator.resolve import resolve_config
    from privacy.config.experiment import load_config
    from privacy.secagg.protocol import SecAggConfig
    from privacy.seeding import CLIENT, torch_generator

    bits, round_idx = 16, 3
    plan = resolve_config(load_config(overrides=RECORD + [f"secagg.bits={bits}", "client.num_actors=2"]),
                          capacity=(2.0, 0.0))
    cfg, (c, h, _) = plan.config, plan.image_shape
    actor = ClientActor(cfg, plan.actor_shards()[0])  # silos 0 and 2
    w = initial_weights(cfg, c, plan.num_classes, h)
    mech = from_experiment(cfg, dim=len(w), batch=expected_batch(plan.clients.sample_rate, plan.clients.sizes))
    step = noiseless(mech.client_step(round_idx))
    protocol = SecAggConfig(dim=mech.grid_dim, bits=bits, threshold=3, session=b"round 3")

    update = actor.train(w, [0, 2], round_idx, SecureStep(step, protocol))

    assert update.delta_sum is None and [k.sender for k in update.keys] == [0, 2]
    data = load_from_config(cfg.data)
    model = build_model(cfg.model.name, in_channels=c, num_classes=plan.num_classes, image_size=h, seed=cfg.run.seed)
    model = model.double()
    vector_to_parameters(torch.from_numpy(w).double(), model.parameters())
    model.train()
    params = list(model.parameters())
    C = cfg.client.max_grad_norm
    for cid in (0, 2):
        x, y = data.tensors("train", np.asarray(plan.partition.indices[cid]))
        gen = torch_generator(cfg.run.noise_seed, CLIENT, cid, round_idx)
        idx = torch.nonzero(torch.rand(len(y), generator=gen) < plan.clients.sample_rate[cid]).squeeze(1)
        assert 0 < len(idx) < len(y)
        truth, norms = torch.zeros(len(w), dtype=torch.float64), []
        for i in idx.tolist():  # per-sample gradients, one by one
            loss = F.cross_entropy(model(x[i:i + 1].double()), y[i:i + 1], reduction="sum")
            g = torch.cat([t.reshape(-1) for t in torch.autograd.grad(loss, params)])
            norms.append(float(g.norm()))
            truth += g * min(1.0, C / norms[-1])
        truth = truth.numpy()
        decoded = unrotate(on_grid(actor._ring[cid].vector, bits) / mech.scale, dim=len(w), seed=step.rotation_seed)

        rounding = math.sqrt(mech.grid_dim) / mech.scale  # < 1 per grid coordinate, an isometry back
        floats = 1e-5 * C * len(idx)  # float32 per-sample gradients against this float64 loop
        assert np.linalg.norm(decoded - truth) <= rounding + floats
        assert rounding + floats < 0.01 * np.linalg.norm(truth)
        assert max(norms) > C  # some records were clipped: the clip is exercised


def test_a_record_with_a_non_finite_gradient_contributes_nothing_and_fails_no_silo():
    """Whether a silo drops out must not depend on one record: a record whose own gradient is not finite is left
    out of the sum (a choice on that record alone), and the other records' contributions stay as they were."""
    from actors.client import ClientActor, initial_weights
    from orchestrator.resolve import resolve_config
    from privacy.config.experiment import load_config
    from privacy.seeding import CLIENT, torch_generator

    plan = resolve_config(load_config(overrides=RECORD + ["client.num_actors=2"]), capacity=(2.0, 0.0))
    cfg, (c, h, _) = plan.config, plan.image_shape
    actor = ClientActor(cfg, plan.actor_shards()[0])
    start = torch.from_numpy(initial_weights(cfg, c, plan.num_classes, h))
    cid, round_idx = min(actor.shards), 1
    x, y = actor.shards[cid]
    gen = torch_generator(cfg.run.noise_seed, CLIENT, cid, round_idx)
    idx = torch.nonzero(torch.rand(len(y), generator=gen) < plan.clients.sample_rate[cid]).squeeze(1)
    honest = actor._clipped_gradient_sum(start, cid, round_idx, math.inf)

    x[idx[0]] = float("nan")  # the actor's own copy of that record (its shard is a view)
    got = actor._clipped_gradient_sum(start, cid, round_idx, math.inf)

    without = actor.trainer.clipper.clipped_sum(x[idx[1:]], y[idx[1:]])
    assert torch.isfinite(got).all()
    assert torch.allclose(got, torch.cat([g.reshape(-1) for g in without.grads]), atol=1e-6)
    assert not torch.allclose(got, honest, atol=1e-6)


def test_a_sweep_composes_each_silos_skellam_events_across_trials():
    """A sweep of secure FedSGD trials: eps_sweep_record is each silo's events of every trial composed (never one
    trial's epsilon alone), the worst silo counting."""
    import pandas as pd

    from orchestrator.sweep_release import sweep_epsilons

    mech = mechanism()
    a, b = mech.planned_event(sample_rate=0.05), mech.planned_event(sample_rate=0.1)  # silo 1 samples more
    ledgers = {}
    for t, rounds in (("t0", 3), ("t1", 5)):
        book, _ = record_ledgers()
        for _ in range(rounds):
            book.book({"record": {0: a, 1: b}})
        ledgers[t] = book.state_dict()["guarantees"]
    delta = 1e-5
    per_trial = [epsilon([b] * 3, delta=delta), epsilon([b] * 5, delta=delta)]
    trials = pd.DataFrame({"trial_id": ["t0", "t1"], "status": ["TERMINATED"] * 2, "eps_record_max": per_trial,
                           "delta_record": [delta] * 2, "eps_client": [math.inf] * 2, "delta_client": [1e-3] * 2})

    release = sweep_epsilons(trials, ledgers)

    assert release["eps_sweep_record"] == pytest.approx(epsilon([b] * 8, delta=delta))
    assert max(per_trial) < release["eps_sweep_record"] > epsilon([a] * 8, delta=delta)
