"""Secure aggregation on real Ray: the server actor gets key messages and masked vectors, never a delta; the
unmasked sum is exactly the survivors' noised ring vectors, with and without drop-outs; too many drop-outs
release nothing and book nothing; a run's client-level epsilon is the Skellam mechanism's own."""

import math

import numpy as np
import pandas as pd
import pytest

from actors.client import ClientActor
from orchestrator.federation import Federation, run_federated
from orchestrator.resolve import resolve_config
from privacy.config.experiment import load_config
from privacy.mechanisms.distributed_dp import from_experiment
from privacy.accountants.skellam import epsilon, epsilon_unsampled
from privacy.secagg.quantization import ring_sum

pytestmark = pytest.mark.slow

SECAGG = ["data.dataset=digits", "data.num_clients=6", "server.clients_per_round=6", "server.rounds=2",
          "client.num_actors=3", "client.num_cpus=0.5", "client.dp=false", "client.lr=0.5", "server.clip=1.0",
          "server.noise_multiplier=0.5", "secagg.enabled=true", "secagg.bits=16", "audit.canaries=0",
          "audit.membership=false", "run.noise_seed=5", "server.sampling=fixed"]


def spy_class(drop_at_masking: tuple[int, ...] = ()):
    """Client actor that keeps a copy of each client's ring vector (what the sum must equal) and drops the
    clients ``drop_at_masking`` after they shared their keys (they send no masked vector)."""

    class SpyClientActor(ClientActor):
        def secagg_masked(self, round_idx, forwarded):
            self.kept = getattr(self, "kept", {})
            kept = {k: v for k, v in forwarded.items() if k not in drop_at_masking}
            self.kept[round_idx] = {k: self._ring[k].vector.copy() for k in kept}
            return super().secagg_masked(round_idx, kept)

        def secagg_unmask(self, round_idx, survivors, client_ids):
            self.unmasked = getattr(self, "unmasked", set()) | {round_idx}
            return super().secagg_unmask(round_idx, survivors, client_ids)

        def unmasked_rounds(self):
            return sorted(getattr(self, "unmasked", set()))

        def kept_rings(self, round_idx):
            return self.kept[round_idx]

        def last_update(self, weights, client_ids, round_idx, step):
            return self.train(weights, client_ids, round_idx, step)

    return SpyClientActor


def one_round(overrides, client_cls):
    """Round 0 of a fresh federation: (row, w_1 - w_0, the ring vectors the clients kept, the mechanism)."""
    import ray

    plan = resolve_config(load_config(overrides=overrides))
    fed = Federation(plan, client_cls=client_cls).start()
    try:
        w0 = ray.get(fed.server.get_weights.remote())
        row = fed.step(0)
        change = ray.get(fed.server.get_weights.remote()) - w0
        kept = {}
        for actor in fed.clients:
            kept.update(ray.get(actor.kept_rings.remote(0)))
    finally:
        fed.close()
    return row, change, kept, from_experiment(plan.config, dim=len(w0)), plan


@pytest.mark.parametrize("dropped", [(), (1, 4)])
def test_the_released_average_is_the_exact_sum_of_the_survivors_ring_vectors(ray_local, dropped):
    row, change, kept, mech, plan = one_round(SECAGG, spy_class(dropped))

    assert sorted(kept) == sorted(set(range(6)) - set(dropped))
    cohort = row["clients_sampled"]  # announced before upload: the shares were mu / cohort
    released = mech.release(ring_sum(list(kept.values()), bits=16), survivors=len(kept), cohort=cohort, round_idx=0)
    expected = released.average  # with the server's top-up of the drop-outs' noise, from its own stream
    np.testing.assert_allclose(change, expected.numpy(), rtol=0, atol=1e-6)  # server lr 1, no momentum
    assert row["secagg_survivors"] == 6 - len(dropped) and row["clients_failed"] == 0
    assert row["secagg_dropped"] == len(dropped)
    assert math.isnan(row["train_loss"]) and math.isnan(row["delta_norm_median"])  # stays on the clients
    booked = mech.event(released, sample_rate=1.0)
    assert booked[0] == mech.mu  # the public sees mu whatever dropped out
    assert row["eps_client"] == pytest.approx(epsilon([booked], delta=row["delta_client"]), rel=1e-12)
    against_server = mech.server_event(released)  # the survivors' shares only: fewer with drop-outs
    assert against_server[0] == pytest.approx(mech.mu * len(kept) / cohort, rel=1e-12)
    assert row["eps_client_server_max"] == pytest.approx(epsilon_unsampled([against_server],
                                                                           delta=row["delta_client"]), rel=1e-12)


def test_fewer_survivors_than_the_threshold_release_nothing_and_book_nothing(ray_local):
    row, change, kept, _, _ = one_round(SECAGG + ["secagg.threshold=5"], spy_class((0, 2)))

    assert len(kept) == 4
    assert "round not released" in row["failures"] and "too many drop-outs" in row["failures"]
    assert not np.any(change)  # the model did not move
    assert row["eps_client"] == 0.0  # nothing released, nothing spent
    assert row["update_norm"] == 0.0


def test_an_actor_returns_key_messages_not_deltas(ray_local):
    import ray

    plan = resolve_config(load_config(overrides=SECAGG))
    fed = Federation(plan, client_cls=spy_class()).start()
    try:
        from actors.secure_step import SecureStep

        mech = from_experiment(plan.config, dim=len(ray.get(fed.server.get_weights.remote())))
        protocol = ray.get(fed.server._protocol.remote(0, 6))
        update = ray.get(fed.clients[0].last_update.remote(ray.get(fed.server.get_weights.remote()), [0, 3], 0,
                                                           SecureStep(mech.client_step(0, 6), protocol)))
    finally:
        fed.close()
    assert update.delta_sum is None
    assert [k.sender for k in update.keys] == [0, 3]
    assert all(math.isnan(r.train_loss) and math.isnan(r.delta_norm) and not r.unclipped for r in update.reports)


def test_a_secure_run_learns_and_reports_the_skellam_epsilon(ray_local):
    df = run_federated(load_config(overrides=SECAGG + ["server.rounds=6", "server.noise_multiplier=0.01"]),
                       progress=None)

    assert df["test_accuracy"].iloc[-1] > 0.5  # digits, 10 classes: chance is 0.1 (0.78 measured)
    assert (df["secagg_survivors"] == 6).all() and "secagg_wrapped" not in df  # a client's wraps stay with it
    assert (df["secagg_near_edge"] <= 0.01 * 8192).all()  # 6,186 parameters padded to 8,192; ~0.27 % expected
    eps = df["eps_client"].to_numpy()
    assert np.all(np.isfinite(eps)) and np.all(np.diff(eps) > 0)


def test_a_round_whose_survivors_would_pass_the_server_target_is_never_unmasked(ray_local):
    """z is calibrated for 4 full rounds of 7 against the server (GDP: 4 units of mu^2); two clients drop out of
    every round, so each books 5/7 of the planned noise (1.4 units): the check before round 3 (2.8 + 1 planned)
    passes, the one on round 3's realised survivors (2.8 + 1.4) does not -- and it comes before any unmasking
    share is asked for."""
    import ray

    cfg = load_config(overrides=SECAGG + ["data.num_clients=7", "server.clients_per_round=7", "server.rounds=4",
                                          "secagg.server_target_epsilon=4.0"])
    plan = resolve_config(cfg)
    fed = Federation(plan, client_cls=spy_class((1, 4))).start()
    try:
        from orchestrator.round_loop import run_rounds

        rows = run_rounds(fed, plan.config, on_row=lambda row, checkpoint: None)
        unmasked = sorted(set().union(*ray.get([a.unmasked_rounds.remote() for a in fed.clients])))
    finally:
        fed.close()

    assert len(rows) == 3 and unmasked == [0, 1]  # round 3 (index 2) reached the survivors, never unmasking
    assert "against the server would reach" in rows[-1]["failures"] and "nothing released" in rows[-1]["stopped"]
    assert rows[-1]["eps_client_server_max"] == rows[-2]["eps_client_server_max"] <= 4.0
    assert rows[-1]["eps_client"] == rows[-2]["eps_client"]  # nothing released: the public books nothing either


def test_survivors_whose_masking_graph_falls_apart_release_nothing_and_say_why(ray_local):
    """A ring of 10 (secagg.neighbours = 2) cut in two arcs by two drop-outs: unmasking would hand the server
    each arc's sum, so the round releases nothing, books nothing and says why in ``failures``."""
    from privacy.secagg.protocol import components, harary_graph

    ring = harary_graph(range(10), k=2, seed=0)  # round 0's graph (graph_seed = round)
    assert len(components(ring, set(range(10)) - {3, 4})) == 2

    row, change, kept, _, _ = one_round(SECAGG + ["data.num_clients=10", "server.clients_per_round=10",
                                                  "secagg.neighbours=2", "secagg.threshold=2"], spy_class((3, 4)))

    assert len(kept) == 8
    assert "round not released" in row["failures"] and "masking graph is disconnected" in row["failures"]
    assert not np.any(change) and row["eps_client"] == 0.0 and row["eps_client_server_max"] == 0.0


def dropping_class(dropped: tuple[int, ...]):
    """Clients ``dropped`` send nothing at the upload stage of either path (masked input, or plain vector)."""

    class DroppingClientActor(ClientActor):
        def secagg_masked(self, round_idx, forwarded):
            return super().secagg_masked(round_idx, {k: v for k, v in forwarded.items() if k not in dropped})

        def secagg_sum(self, round_idx, client_ids):
            return super().secagg_sum(round_idx, [k for k in client_ids if k not in dropped])

    return DroppingClientActor


def round_table(overrides, client_cls, rounds: int):
    from orchestrator.round_loop import rounds_frame

    plan = resolve_config(load_config(overrides=overrides))
    fed = Federation(plan, client_cls=client_cls).start()
    try:
        return rounds_frame([fed.step(r) for r in range(rounds)])
    finally:
        fed.close()


def test_the_sum_only_path_gives_the_full_protocols_round_table_with_drop_outs(ray_local):
    """secagg.protocol = "sum" skips keys, masks and shares but releases the same sum: with two clients
    dropping at upload, every column of the round table but the wall-clock ones is the same."""
    base = [o for o in SECAGG if not o.startswith("server.rounds")] + ["server.sampling=poisson",
                                                                       "server.clients_per_round=5"]
    full = round_table(base + ["secagg.protocol=full"], dropping_class((1, 4)), rounds=3)
    fast = round_table(base + ["secagg.protocol=sum"], dropping_class((1, 4)), rounds=3)

    clocks = ["seconds", "audit_seconds"]
    assert (full["secagg_dropped"] > 0).any() and full["secagg_survivors"].notna().all()
    pd.testing.assert_frame_equal(fast.drop(columns=clocks), full.drop(columns=clocks), check_exact=True)
