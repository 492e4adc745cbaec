"""The ``[secagg]`` config section: the untrusted-server trust model (secure aggregation, distributed noise).

With ``secagg.enabled = true`` the server never sees a client's delta: each client clips, quantises and
adds its share of Skellam noise (:mod:`privacy.mechanisms.distributed_dp`), masks the ring vector
(:mod:`privacy.secagg.protocol`) and the server unmasks only the sum. ``server.clip``,
``server.noise_multiplier`` and ``server.clients_per_round`` keep their meaning (S, z, the fixed
denominator m); this section holds what only the untrusted server needs. The checks that involve other
sections live in :func:`check_secagg_options`.

``level`` picks one of the two uses of the mechanism:

- ``client`` (cross-device DP-FedAvg): each client clips its model delta to ``server.clip`` and the sum
  carries Skellam noise of multiplier ``server.noise_multiplier``; the epsilon is client-level
  (:mod:`privacy.mechanisms.distributed_dp`);
- ``record`` (cross-silo FedSGD): each round every silo Poisson-samples its records, sums their
  per-sample gradients clipped to ``client.max_grad_norm`` and adds its share of noise of multiplier
  ``client.noise_multiplier``: the unmasked sum is one DP-SGD step on the union, and the epsilon is
  record-level at the noise of one pooled run (:mod:`privacy.mechanisms.distributed_dpsgd`).
"""

from __future__ import annotations

from dataclasses import dataclass

from privacy.config.validation import _check, _check_int, _finite

LEVELS = ("client", "record")  # what the clients' noise shares protect: see the module docstring
SECAGG_ACCOUNTANTS = ("exact", "zhu_wang")  # privacy.accountants.skellam.epsilon
PROTOCOLS = ("full", "sum")  # how the simulator computes the secure sum: see SecAggSection.protocol


@dataclass(frozen=True)
class SecAggSection:
    enabled: bool = False  # untrusted server: clients add Skellam noise shares, the server sees only the masked sum
    level: str = "client"  # client: DP-FedAvg, client-level epsilon | record: FedSGD across silos, record-level epsilon
    bits: int = 16  # b: the ring Z_2^b of secure aggregation (upload size b bits per coordinate)
    threshold: int = 0  # t: Shamir shares that unmask a client; 0 = a majority of each neighbourhood
    neighbours: int = 0  # k (even): sparse masking graph of Bell et al. 2020; 0 = every pair of the cohort
    colluders: int = 0  # clients whose noise shares the server may learn: not counted in the against-the-server epsilon
    accountant: str = "exact"  # exact: the Gaussian that dominates Skellam noise | zhu_wang: general RDP bound (looser)
    server_target_epsilon: float | None = None  # client-level epsilon against the server (calibrates z with the public one)
    rotate: bool = True  # randomised Hadamard rotation before rounding (flattens coordinates: fewer bits)
    k_stddevs: float = 4.0  # head-room of the scale rule: standard deviations of the sum that fit half the ring
    scale: float = 0.0  # integer units per model unit; 0 = the largest scale the bits allow (heuristic rule)
    protocol: str = "full"  # full: keys, masks, Shamir shares (Bonawitz et al.) | sum: the same sum without them, for sweeps

    def __post_init__(self) -> None:
        _check(isinstance(self.enabled, bool), "secagg.enabled", self.enabled, "must be true or false")
        _check(self.level in LEVELS, "secagg.level", self.level, f"must be one of {', '.join(LEVELS)}")
        _check_int("secagg.bits", self.bits, 2)
        _check_int("secagg.threshold", self.threshold, 0)
        _check_int("secagg.neighbours", self.neighbours, 0)
        _check(self.neighbours % 2 == 0, "secagg.neighbours", self.neighbours, "must be even (k/2 neighbours on either side of the ring), or 0 for every pair")
        _check_int("secagg.colluders", self.colluders, 0)
        _check(self.accountant in SECAGG_ACCOUNTANTS, "secagg.accountant", self.accountant,
               f"must be one of {', '.join(SECAGG_ACCOUNTANTS)}")
        if self.server_target_epsilon is not None:
            _check(_finite("secagg.server_target_epsilon", self.server_target_epsilon) > 0,
                   "secagg.server_target_epsilon", self.server_target_epsilon, "must be > 0")
        _check(isinstance(self.rotate, bool), "secagg.rotate", self.rotate, "must be true or false")
        _check(self.protocol in PROTOCOLS, "secagg.protocol", self.protocol, f"must be one of {', '.join(PROTOCOLS)}")
        _check(_finite("secagg.k_stddevs", self.k_stddevs) > 0, "secagg.k_stddevs", self.k_stddevs, "must be > 0")
        _check(_finite("secagg.scale", self.scale) >= 0, "secagg.scale", self.scale,
               "must be >= 0 (0 = the heuristic scale for the bits)")

    def holders(self, cohort: int) -> int:
        """Holders of each client's secrets: its neighbours and itself."""
        return cohort if not self.neighbours or self.neighbours >= cohort - 1 else self.neighbours + 1

    def threshold_for(self, cohort: int) -> int:
        """t in use for a cohort of ``cohort`` clients: the configured one, or a majority of the holders."""
        return self.threshold or self.holders(cohort) // 2 + 1


def check_secagg_options(secagg: SecAggSection, server, client, data, audit) -> None:
    """What secure aggregation cannot be combined with, one clear error each (called by ExperimentConfig)."""
    if not secagg.enabled:
        return
    if secagg.level == "record":
        _check_record_level(secagg, server, client, data, audit)
        return
    m = server.clients_per_round
    _check(m >= 2, "server.clients_per_round", m, "must be >= 2 with secagg.enabled: a client's noise is the "
           "other clients' shares")
    _check(not server.adaptive_clip, "server.adaptive_clip", server.adaptive_clip,
           "cannot be combined with secagg.enabled: the clip-bit count would have to be securely summed and "
           "noised by the clients too; use a fixed server.clip")
    _check(server.clip > 0, "server.clip", server.clip,
           "must be > 0 with secagg.enabled: clients clip their deltas before quantising them")
    _check(secagg.threshold <= m, "secagg.threshold", secagg.threshold,
           f"above the expected cohort of {m} clients (server.clients_per_round): no round could unmask")
    _check(secagg.colluders < secagg.threshold_for(m), "secagg.colluders", secagg.colluders,
           f"must be below the Shamir threshold t = {secagg.threshold_for(m)} of a cohort of {m}: t colluding "
           "holders and the server can unmask a client's vector")
    _check(secagg.threshold <= secagg.holders(m), "secagg.threshold", secagg.threshold,
           f"above the {secagg.holders(m)} holders of each client's secrets (secagg.neighbours + 1): "
           "lower the threshold or raise secagg.neighbours")
    _check(4.0 ** secagg.bits > m * secagg.k_stddevs ** 2, "secagg.bits", secagg.bits,
           f"too few for a cohort of {m}: the sum's expected range overflows Z_2^b (need 4^bits > m k^2 = "
           f"{m * secagg.k_stddevs ** 2:g}); raise secagg.bits, or lower server.clients_per_round or "
           "secagg.k_stddevs")


def _check_record_level(secagg: SecAggSection, server, client, data, audit) -> None:
    """FedSGD across silos: every silo, one clipped-gradient sum per round, record-level noise only."""
    why = "with secagg.level = \"record\" (FedSGD: one DP-SGD step on the union of the silos per round)"
    _check(client.dp, "client.dp", client.dp, f"must be true {why}")
    _check(client.grad_sample_mode == "bookkeeping", "client.grad_sample_mode", client.grad_sample_mode,
           f"must be \"bookkeeping\" {why}: the silos sum per-sample clipped gradients without an optimiser")
    _check(client.local_steps == 1, "client.local_steps", client.local_steps,
           f"must be 1 {why}; server.lr is the step size and server.rounds the number of steps")
    k = data.num_clients
    _check(k >= 2, "data.num_clients", k, f"must be >= 2 {why}: a silo's noise is in the others' shares too")
    _check(server.clients_per_round == k, "server.clients_per_round", server.clients_per_round,
           f"must equal data.num_clients ({k}) {why}: every silo takes part in every round")
    _check(4.0 ** secagg.bits > k * secagg.k_stddevs ** 2, "secagg.bits", secagg.bits,
           f"too few for {k} silos (need 4^bits > K k^2 = {k * secagg.k_stddevs ** 2:g})")
    _check(server.noise_multiplier == 0, "server.noise_multiplier", server.noise_multiplier,
           f"must be 0 {why}: the noise is record-level (client.noise_multiplier or client.target_epsilon)")
    _check(server.target_epsilon is None, "server.target_epsilon", server.target_epsilon,
           f"must be unset {why}: the guarantee is record-level (client.target_epsilon)")
    _check(secagg.server_target_epsilon is None, "secagg.server_target_epsilon", secagg.server_target_epsilon,
           f"must be unset {why}: the record-level epsilon already holds against the server (client.target_epsilon)")
    _check(secagg.colluders < secagg.threshold_for(k), "secagg.colluders", secagg.colluders,
           f"must be below the Shamir threshold t = {secagg.threshold_for(k)} of the {k} silos: t colluding holders "
           "and the server can unmask a silo's vector")
    _check(not server.adaptive_clip, "server.adaptive_clip", server.adaptive_clip, f"must be false {why}")
    _check(not audit.canaries, "audit.canaries", audit.canaries,
           f"must be 0 {why}: the canary audit tests client-level DP")
    _check(secagg.threshold <= server.clients_per_round, "secagg.threshold", secagg.threshold,
           f"above the {server.clients_per_round} silos: no round could unmask")
    _check(secagg.threshold <= secagg.holders(server.clients_per_round), "secagg.threshold", secagg.threshold,
           f"above the {secagg.holders(server.clients_per_round)} holders of each silo's secrets "
           "(secagg.neighbours + 1)")
