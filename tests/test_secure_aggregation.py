"""Secure aggregation (Bonawitz et al. 2017): exact sums with drop-outs, clear errors, uniform uploads, Shamir."""

import itertools
import pickle

import numpy as np
import pytest
from scipy import stats

from privacy.secagg.protocol import (PRIME, RandomStream, SecAggClient, SecAggConfig, SecAggServer, Survivors,
                                        UnmaskingShares,
                                        check_holders, components, harary_graph, shamir_reconstruct, shamir_share)


def run_round(cfg, inputs, *, drop_before_sharing=(), drop_before_masking=(), drop_before_unmasking=(), seed=0,
              answer=lambda shares: shares):
    """One round as the actors will run it: only messages pass between the clients and the server. ``answer``
    may alter a client's unmasking shares on their way to the server."""
    clients = {i: SecAggClient(i, cfg, entropy=b"test-%d" % seed) for i in inputs}
    server = SecAggServer(cfg, graph_seed=seed)
    directory = server.collect_keys([c.advertise_keys() for c in clients.values()])
    forwarded = server.route_shares([c.share_keys(directory) for i, c in clients.items()
                                     if i not in drop_before_sharing])
    masked = [clients[i].masked_input(inputs[i], forwarded[i]) for i in forwarded if i not in drop_before_masking]
    survivors = server.collect_masked(masked)
    total, diag = server.unmask([answer(clients[i].unmasking_shares(survivors)) for i in sorted(survivors.ids)
                                 if i not in drop_before_unmasking])
    return total, survivors, diag, masked


def integer_inputs(n, cfg, seed=0):
    rng = np.random.default_rng(seed)
    half = 1 << (cfg.bits - 1)
    return {i: rng.integers(-half, half, cfg.dim) for i in range(n)}  # the whole signed range of the ring


def exact_sum(inputs, ids, bits):
    return (sum(inputs[i] for i in ids) % (1 << bits)).astype(np.uint64)


def test_the_unmasked_sum_is_the_exact_integer_sum_without_dropouts():
    cfg = SecAggConfig(dim=300, bits=16, threshold=4)
    inputs = integer_inputs(6, cfg)

    total, survivors, diag, _ = run_round(cfg, inputs)

    assert survivors.ids == frozenset(range(6)) and diag.survivors == 6
    np.testing.assert_array_equal(total, exact_sum(inputs, range(6), 16))


def test_the_unmasked_sum_is_exact_with_dropouts_at_every_stage():
    cfg = SecAggConfig(dim=300, bits=32, threshold=4)
    inputs = integer_inputs(9, cfg, seed=1)

    total, survivors, diag, _ = run_round(cfg, inputs, drop_before_sharing={0}, drop_before_masking={3, 7},
                                          drop_before_unmasking={5})

    assert survivors.ids == frozenset({1, 2, 4, 5, 6, 8})  # 5 masked its input, then vanished: its input counts
    assert (diag.dropped_before_sharing, diag.dropped_after_sharing, diag.responders) == (1, 2, 5)
    np.testing.assert_array_equal(total, exact_sum(inputs, survivors.ids, 32))


def test_a_sparse_neighbour_graph_gives_the_exact_sum_with_dropouts():
    cfg = SecAggConfig(dim=200, bits=20, threshold=3, neighbours=4)
    inputs = integer_inputs(16, cfg, seed=2)
    assert len(components(harary_graph(range(16), k=4, seed=0), set(range(16)) - {4, 0, 9})) == 1

    total, survivors, _, _ = run_round(cfg, inputs, drop_before_sharing={4}, drop_before_masking={0, 9},
                                       drop_before_unmasking={2})

    np.testing.assert_array_equal(total, exact_sum(inputs, survivors.ids, 20))


def test_survivors_whose_masking_graph_falls_apart_get_nothing_unmasked():
    # a ring of 10 (k = 2): two drop-outs cut it in two arcs, whose pairwise masks cancel within each arc
    cfg = SecAggConfig(dim=50, bits=16, threshold=2, neighbours=2)
    inputs = integer_inputs(10, cfg, seed=4)
    ring = harary_graph(range(10), k=2, seed=0)
    cut = {4, 3}  # not neighbours on this ring: removing both leaves two arcs
    assert not ring[4] & cut and len(components(ring, set(range(10)) - cut)) == 2

    with pytest.raises(ValueError, match="masking graph is disconnected .2 parts"):
        run_round(cfg, inputs, drop_before_masking=cut)
    total, survivors, _, _ = run_round(cfg, inputs, drop_before_masking={4})  # one drop-out: a path remains
    np.testing.assert_array_equal(total, exact_sum(inputs, survivors.ids, 16))


def test_the_sum_only_holders_check_refuses_what_unmasking_refuses():
    """10 clients, k = 4, t = 3: three of client u's four neighbours drop before masking. The survivors stay
    connected and above t, but u's self mask has only 2 holders left: the full protocol cannot unmask, and
    the sum-only path's check (actors/secure_round.py) refuses with the same words."""
    cfg = SecAggConfig(dim=40, bits=16, threshold=3, neighbours=4)
    graph = harary_graph(range(10), k=4, seed=0)
    u = 0
    cut = set(sorted(graph[u])[:3])
    survivors = frozenset(range(10)) - cut
    assert len(components(graph, survivors)) == 1 and len(survivors) >= 3

    with pytest.raises(ValueError, match=f"2 shares of client {u}'s self mask") as full:
        run_round(cfg, integer_inputs(10, cfg, seed=5), drop_before_masking=cut)
    with pytest.raises(ValueError) as fast:
        check_holders(graph, range(10), survivors, threshold=3)
    assert str(fast.value) == str(full.value)
    check_holders(graph, range(10), frozenset(range(10)) - set(sorted(graph[u])[:2]), threshold=3)  # 3 left: fine


def test_the_sparse_graph_is_symmetric_and_k_regular():
    graph = harary_graph(range(20), k=6, seed=3)

    assert all(len(nbrs) == 6 and u not in nbrs for u, nbrs in graph.items())
    assert all(u in graph[v] for u, nbrs in graph.items() for v in nbrs)
    assert harary_graph(range(5), k=6, seed=3) == {u: frozenset(range(5)) - {u} for u in range(5)}  # small: complete


def test_too_few_survivors_is_an_error_not_a_wrong_sum():
    cfg = SecAggConfig(dim=50, bits=16, threshold=4)
    inputs = integer_inputs(6, cfg)

    with pytest.raises(ValueError, match="too many drop-outs: 3 clients sent masked inputs, need t = 4"):
        run_round(cfg, inputs, drop_before_masking={0, 1, 2})


def test_too_few_unmasking_responses_is_an_error_not_a_wrong_sum():
    cfg = SecAggConfig(dim=50, bits=16, threshold=4)
    inputs = integer_inputs(6, cfg)

    with pytest.raises(ValueError, match="too many drop-outs: 3 shares of client .*, need t = 4"):
        run_round(cfg, inputs, drop_before_masking={0}, drop_before_unmasking={1, 2})


def test_a_client_refuses_to_unmask_for_too_few_survivors():
    cfg = SecAggConfig(dim=10, bits=16, threshold=3)
    client = SecAggClient(0, cfg, entropy=b"x")

    with pytest.raises(ValueError, match="too many drop-outs: 2 survivors, need t = 3"):
        client.unmasking_shares(Survivors(frozenset({0, 1})))


def test_threshold_above_the_cohort_is_a_clear_error():
    cfg = SecAggConfig(dim=10, bits=16, threshold=4)
    server = SecAggServer(cfg)
    keys = [SecAggClient(i, cfg, entropy=b"x").advertise_keys() for i in range(3)]

    with pytest.raises(ValueError, match="threshold t = 4 above the cohort of 3 clients"):
        server.collect_keys(keys)
    with pytest.raises(ValueError, match="holders of each secret"):
        SecAggConfig(dim=10, bits=16, threshold=6, neighbours=4)
    with pytest.raises(ValueError, match="even k"):
        SecAggConfig(dim=10, bits=16, threshold=2, neighbours=3)


def test_each_client_reveals_one_secret_per_peer_never_both():
    cfg = SecAggConfig(dim=20, bits=16, threshold=3)
    inputs = integer_inputs(6, cfg)
    clients = {i: SecAggClient(i, cfg, entropy=b"y") for i in inputs}
    server = SecAggServer(cfg)
    directory = server.collect_keys([c.advertise_keys() for c in clients.values()])
    forwarded = server.route_shares([c.share_keys(directory) for c in clients.values()])
    survivors = server.collect_masked([clients[i].masked_input(inputs[i], forwarded[i]) for i in (0, 1, 2, 3)])

    replies = [clients[i].unmasking_shares(survivors) for i in sorted(survivors.ids)]

    for r in replies:
        assert set(r.self_mask_shares) == {0, 1, 2, 3} and set(r.key_shares) == {4, 5}
    assert all(pickle.loads(pickle.dumps(r)) == r for r in replies)  # plain data: Ray can carry it


def _masked_upload(x, cfg, seed):
    inputs = {0: x, 1: np.zeros(cfg.dim, np.int64), 2: np.zeros(cfg.dim, np.int64)}
    _, _, _, masked = run_round(cfg, inputs, seed=seed)
    return next(m.vector for m in masked if m.sender == 0)


def test_a_single_masked_upload_is_uniform_and_does_not_depend_on_the_input():
    cfg = SecAggConfig(dim=40_000, bits=8, threshold=2)
    rng = np.random.default_rng(4)
    skewed = rng.binomial(6, 0.2, cfg.dim).astype(np.int64)  # small, very non-uniform integers
    constant = np.full(cfg.dim, 77, np.int64)

    uploads = [_masked_upload(skewed, cfg, seed=10), _masked_upload(constant, cfg, seed=11)]

    counts = [np.bincount(u.astype(np.int64), minlength=256) for u in uploads]
    assert all(stats.chisquare(c).pvalue > 1e-3 for c in counts)  # uniform on Z_256
    assert stats.chi2_contingency(np.vstack(counts)).pvalue > 1e-3  # same distribution for both inputs
    assert abs(stats.pearsonr(uploads[0].astype(float), skewed).statistic) < 4 / np.sqrt(cfg.dim)
    assert stats.chisquare(np.bincount(skewed, minlength=256)).pvalue < 1e-12  # the test sees non-uniformity


def test_the_server_unmasks_from_t_shares_and_refuses_a_wrong_one_among_them():
    """Unmasking interpolates each secret from the t shares of the lowest holders: a garbled share outside them
    leaves the sum exact; a garbled share among them is refused."""
    cfg = SecAggConfig(dim=16, bits=12, threshold=3, neighbours=4)
    inputs = integer_inputs(8, cfg)
    holders = sorted(harary_graph(range(8), k=4, seed=0)[0] | {0})  # of client 0's secrets: run_round's graph

    def garbling(holder):  # that holder's share of client 0's self mask garbled: a random field element added
        def answer(a):
            if a.sender != holder:
                return a
            garbled = (a.self_mask_shares[0] + RandomStream(b"garble").field_element()) % PRIME
            return UnmaskingShares(a.sender, {**a.self_mask_shares, 0: garbled}, a.key_shares)
        return answer

    exact = exact_sum(inputs, range(8), cfg.bits)
    np.testing.assert_array_equal(run_round(cfg, inputs)[0], exact)
    np.testing.assert_array_equal(run_round(cfg, inputs, answer=garbling(holders[-1]))[0], exact)  # not used
    with pytest.raises(ValueError, match="client 0"):
        run_round(cfg, inputs, answer=garbling(holders[0]))


def lagrange_at_zero(points):
    """The textbook interpolation at 0 over GF(PRIME), one modular inverse per term."""
    secret = 0
    for xi, yi in points:
        num = den = 1
        for xj, _ in points:
            if xj != xi:
                num, den = num * xj % PRIME, den * (xj - xi) % PRIME
        secret = (secret + yi * num * pow(den, -1, PRIME)) % PRIME
    return secret


@pytest.mark.parametrize("count", [1, 2, 17, 33])
def test_shamir_reconstruct_is_the_textbook_interpolation(count):
    rng = np.random.default_rng(count)
    stream = RandomStream(b"lagrange %d" % count)
    for high in (1000, 1 << 47):  # holder ids as in a federation, and the largest a client may have
        holders = [int(v) for v in rng.choice(high, size=count, replace=False)]
        shares = {v: stream.field_element() for v in holders}

        assert shamir_reconstruct(shares) == lagrange_at_zero([(v + 1, y) for v, y in shares.items()])


def test_shamir_reconstructs_from_any_t_shares_and_not_from_t_minus_1():
    rng = RandomStream(b"shamir")
    secret = rng.field_element()
    holders = list(range(10))

    shares = shamir_share(secret, threshold=4, holders=holders, rng=rng)

    assert all(shamir_reconstruct({v: shares[v] for v in subset}) == secret
               for subset in itertools.combinations(holders, 4))
    assert all(shamir_reconstruct({v: shares[v] for v in subset}) != secret
               for subset in itertools.combinations(holders, 3))
    assert all(0 <= y < PRIME for y in shares.values())
