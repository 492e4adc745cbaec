"""The server actor: noisy FedAvg (DP-FedAvg) with client-level accounting.

Each round: Poisson-sample clients (rate q = m / N), put the global weights in the
object store once, let each client actor train its sampled clients and return the
sum of their clipped deltas, add N(0, (z S)^2) to the total, divide by the expected
cohort m (fixed denominator), apply with the server learning rate, evaluate, step
both ledgers, and return one metrics row.

With adaptive clipping (Andrew et al. 2021) the clip S_t changes every round: the
clients also report 1[||Delta_k|| <= S_t], the server releases their noised share and
moves S_t toward the target quantile; the deltas then get the multiplier sigma_Delta
that composes with the count's to the booked z.

For the empirical audit, canary clients (``privacy.canaries``) join the clipped
sum before the noise, never a ledger; after the last round the server scores them and
runs a membership-inference test on the final model (``audit``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from actors.client import ActorUpdate, ClientReport
from actors.model_inputs import load_from_config
from actors.models import build_model
from actors.local_training import load_flat_
from privacy.accounting import Ledger
from privacy.audit import audit_delta, one_run_audit
from privacy.canaries import Canaries
from privacy.clipping import adaptive_clip_update
from privacy.config import ExperimentConfig
from privacy.mechanisms import (adaptive_clipping_delta_multiplier, broadcast_noise, dp_fedavg_aggregate,
                                     noised_unclipped_fraction)
from privacy.membership import loss_threshold_auc, membership_auc_bound, membership_sample
from actors.server_optimizer import server_learning_rate, server_step
from privacy.seeding import BROADCAST, CLIP_NOISE, COHORT, SERVER_NOISE, numpy_rng, torch_generator

FEDERATION = -1  # the client-level ledger's one party: the federation as a whole

# Deliberate privacy bugs a test may switch on to prove the audit catches them; never set in real runs.
TEST_FAULTS = ("", "drop_server_noise")
AUDIT_COLUMNS = ("eps_audit_lower", "eps_client_at_audit_delta", "audit_delta", "audit_guesses", "audit_correct",
                 "mia_auc", "mia_auc_bound")


@dataclass(frozen=True)
class ClientPlan:
    """What the server knows of each client before any round: who hosts it and its privacy per round."""

    actor: tuple[int, ...]  # actor index of client k
    sample_rate: tuple[float, ...]  # record-level Poisson rate of client k
    steps: tuple[int, ...]  # local steps per round of client k


def sample_cohort(num_clients: int, expected: int, *, scheme: str, seed: int, round_idx: int) -> np.ndarray:
    """Client ids of a round's cohort. ``poisson``: each client independently with q = m / N (what the
    accountant assumes). ``fixed``: exactly m without replacement (accounted with the Poisson bound)."""
    rng = numpy_rng(seed, COHORT, round_idx)
    if scheme == "fixed":
        return np.sort(rng.choice(num_clients, size=expected, replace=False))
    return np.flatnonzero(rng.random(num_clients) < expected / num_clients)


class ServerActor:
    """Holds the global model, the client actor handles and both ledgers. Wrap with ``ray.remote``."""

    def __init__(self, cfg: ExperimentConfig, clients: list, plan: ClientPlan, weights: np.ndarray, *,
                 delta_record: float, delta_client: float, num_threads: int = 1, test_fault: str = ""):
        torch.set_num_threads(max(1, int(num_threads)))
        if test_fault not in TEST_FAULTS:
            raise ValueError(f"test_fault = {test_fault!r}: must be one of {TEST_FAULTS}")
        self.cfg, self.clients, self.plan = cfg, clients, plan
        self.delta_record, self.delta_client = delta_record, delta_client
        self.test_fault = test_fault
        self.num_clients = len(plan.actor)
        self.weights = torch.tensor(weights, dtype=torch.float32)
        self.initial_weights = self.weights.clone()  # w_0, for the canary scores <u_j, w_T - w_0>
        data = load_from_config(cfg.data, cache=False)  # dropped when __init__ returns: the test split stays
        self.x_test, self.y_test = data.tensors("test")
        a = cfg.audit
        self.canaries = (Canaries(a.canaries, self.weights.numel(), seed=cfg.run.seed,
                                  sample_rate=cfg.server.clients_per_round / self.num_clients)
                         if a.canaries else None)
        self.members = self.nonmembers = None
        if a.membership:
            mem, non = membership_sample(len(data.y_train), len(data.y_test), a.membership_records, seed=cfg.run.seed)
            self.members, self.nonmembers = data.tensors("train", mem), data.tensors("test", non)
        c, h, _ = data.shape
        self.model = build_model(cfg.model.name, in_channels=c, num_classes=data.num_classes, image_size=h,
                                 seed=cfg.run.seed)
        self.params = list(self.model.parameters())
        self.record = Ledger(accountant=cfg.client.accountant)
        self.client_level = Ledger(accountant=cfg.server.accountant)
        self.eps_record = np.zeros(self.num_clients)  # cache: only participants' epsilons change
        self.resync: set[int] = set()  # actors restarted since their last round: re-send their histories
        self.eps_record_next = self._one_round_epsilons()  # each client's epsilon after one more round
        self.round = 0
        self.velocity: torch.Tensor | None = None  # server momentum buffer (FedAvgM)
        s = cfg.server
        self.clip = s.initial_clip if s.adaptive_clip else s.clip  # S_t, the clip of the coming round
        # z is what the ledger books; with adaptive clipping the deltas get sigma_Delta > z and the
        # clip-bit count 2 sigma_b, which compose back to z (Andrew et al. 2021)
        self.delta_multiplier = (adaptive_clipping_delta_multiplier(noise_multiplier=s.noise_multiplier,
                                                                    count_noise_std=s.count_noise_std)
                                 if s.adaptive_clip else s.noise_multiplier)

    # --- privacy --------------------------------------------------------------------------
    @property
    def sample_rate(self) -> float:
        return self.cfg.server.clients_per_round / self.num_clients

    def eps_client(self) -> float:
        s = self.cfg.server
        if s.noise_multiplier == 0:
            return math.inf
        return self.client_level.epsilon(FEDERATION, delta=self.delta_client)

    def _round_event(self, k: int) -> tuple[float, float, int]:
        """Client k's record-level event for one round in which it takes part."""
        return self.cfg.client.noise_multiplier, self.plan.sample_rate[k], self.plan.steps[k]

    def _one_round_epsilons(self) -> np.ndarray | None:
        """Every client's epsilon after a first round, computed once per distinct (rate, steps); None when no
        record-level target needs it. Kept up to date for participants only: O(cohort) work per round."""
        c = self.cfg.client
        if c.target_epsilon is None or not c.dp:
            return None
        once: dict[tuple[float, int], float] = {}
        out = np.empty(self.num_clients)
        for k in range(self.num_clients):
            key = (self.plan.sample_rate[k], self.plan.steps[k])
            if key not in once:
                once[key] = Ledger(c.accountant, {0: [self._round_event(k)]}).epsilon(0, delta=self.delta_record)
            out[k] = once[key]
        return out

    def _record_events(self, cohort: np.ndarray) -> None:
        """Record-level events of the cohort, booked before any result is awaited: a crash never under-reports."""
        if not self.cfg.client.dp:
            return
        for k in cohort:
            k = int(k)
            noise, rate, steps = self._round_event(k)
            self.record.record(k, noise_multiplier=noise, sample_rate=rate, steps=steps)
            self.eps_record[k] = self.record.epsilon(k, delta=self.delta_record)
            if self.eps_record_next is not None:
                hist = self.record.histories[k] + [self._round_event(k)]
                self.eps_record_next[k] = Ledger(self.record.accountant, {0: hist}).epsilon(0, delta=self.delta_record)

    def budget_exceeded_next_round(self) -> str:
        """Why one more round would exceed a target epsilon ('' if it would not)."""
        c, s = self.cfg.client, self.cfg.server
        if s.target_epsilon is not None and s.noise_multiplier > 0:
            hist = self.client_level.histories.get(FEDERATION, []) + [(s.noise_multiplier, self.sample_rate, 1)]
            eps = Ledger(s.accountant, {0: hist}).epsilon(0, delta=self.delta_client)
            if eps > s.target_epsilon:
                return f"client-level epsilon would reach {eps:.4g} > target {s.target_epsilon}"
        if self.eps_record_next is not None:
            worst = float(self.eps_record_next.max())  # any client may be sampled next: the worst one counts
            if worst > c.target_epsilon:
                return f"record-level epsilon would reach {worst:.4g} > target {c.target_epsilon}"
        return ""

    # --- one round ------------------------------------------------------------------------
    def run_round(self, round_idx: int) -> dict:
        import ray

        t0 = time.perf_counter()
        s = self.cfg.server
        cohort = sample_cohort(self.num_clients, s.clients_per_round, scheme=s.sampling, seed=self.cfg.run.seed,
                               round_idx=round_idx)
        by_actor: dict[int, list[int]] = {}
        for k in cohort:
            by_actor.setdefault(self.plan.actor[k], []).append(int(k))
        weights_ref = ray.put(self.weights.numpy())  # one copy in the object store per round
        failures: list[str] = []
        for a in sorted(self.resync & set(by_actor)):  # a restarted actor gets its clients' histories back first
            if not self._resync(a):
                failures += [f"client {k}: actor {a} did not come back" for k in by_actor.pop(a)]
        clip = self.clip
        futures = {a: self.clients[a].train.remote(weights_ref, ids, round_idx, clip) for a, ids in by_actor.items()}
        self._record_events(cohort)  # accounting overlaps the clients' training
        ready, _ = ray.wait(list(futures.values()), num_returns=len(futures), timeout=s.round_timeout or None)
        ready = set(ready)
        total = np.zeros(self.weights.shape, dtype=np.float32)
        reports: list[ClientReport] = []
        for a, ref in futures.items():
            update, reason = self._collect(a, ref, ref in ready)
            if update is None:
                failures += [f"client {k}: {reason}" for k in by_actor[a]]
                continue
            failures += [f"client {r.client_id}: {r.error}" for r in update.reports if r.error]
            if update.succeeded:
                total += update.delta_sum
            reports += update.succeeded
        total_t = torch.from_numpy(total)
        canaries_in_round, audit_seconds = 0, 0.0
        if self.canaries is not None:  # canary clients join the clipped sum before the noise, like real ones
            ta = time.perf_counter()
            canary_sum, canaries_in_round = self.canaries.round_sum(round_idx, clip)
            total_t = total_t + canary_sum
            audit_seconds += time.perf_counter() - ta
        noise_multiplier = 0.0 if self.test_fault == "drop_server_noise" else self.delta_multiplier
        avg, diag = dp_fedavg_aggregate(total_t, noise_multiplier=noise_multiplier, clip=clip,
                                        expected_cohort=s.clients_per_round,
                                        generator=torch_generator(self.cfg.run.seed, SERVER_NOISE, round_idx))
        noised_fraction = math.nan
        if s.adaptive_clip:
            noised_fraction = noised_unclipped_fraction(
                sum(r.unclipped for r in reports), len(reports), expected_cohort=s.clients_per_round,
                std=s.count_noise_std, generator=torch_generator(self.cfg.run.seed, CLIP_NOISE, round_idx))
            self.clip = adaptive_clip_update(clip, noised_fraction, target_quantile=s.target_quantile,
                                             learning_rate=s.clip_lr)
        lr = server_learning_rate(s.lr, s.lr_schedule, round_idx, s.rounds)
        self.weights, self.velocity = server_step(self.weights, avg, self.velocity, lr=lr, momentum=s.momentum)
        self.weights = broadcast_noise(self.weights, std=s.broadcast_noise,
                                       generator=torch_generator(self.cfg.run.seed, BROADCAST, round_idx))
        if s.noise_multiplier > 0:
            self.client_level.record(FEDERATION, noise_multiplier=s.noise_multiplier, sample_rate=self.sample_rate,
                                     steps=1)
        self.round = round_idx + 1
        last = self.round == self.cfg.server.rounds
        acc, loss = self.evaluate() if (self.round % self.cfg.run.eval_every == 0 or last) else (math.nan, math.nan)
        n = np.array([r.examples for r in reports], dtype=float)
        losses = np.array([r.train_loss for r in reports], dtype=float)
        ok = np.isfinite(losses)
        audit = dict.fromkeys(AUDIT_COLUMNS, math.nan)
        if last:
            ta = time.perf_counter()
            audit = self.audit()
            audit_seconds += time.perf_counter() - ta
        return {
            "round": self.round,
            "test_accuracy": acc,
            "test_loss": loss,
            "train_loss": float(np.average(losses[ok], weights=n[ok])) if ok.any() else math.nan,
            "eps_record_max": float(self.eps_record.max()) if self.cfg.client.dp else math.inf,
            "eps_record_median": float(np.median(self.eps_record)) if self.cfg.client.dp else math.inf,
            "delta_record": self.delta_record,
            "eps_client": self.eps_client(),
            "delta_client": self.delta_client,
            "clients_sampled": int(len(cohort)),
            "clients_failed": len(failures),
            "failures": "; ".join(failures),
            "noise_multiplier_local": self.cfg.client.noise_multiplier if self.cfg.client.dp else 0.0,
            "max_grad_norm_local": self.cfg.client.max_grad_norm if self.cfg.client.dp else math.inf,
            "noise_multiplier_server": s.noise_multiplier,
            "noise_multiplier_delta": self.delta_multiplier,
            "clip_server": clip if clip > 0 else math.inf,
            "clip_count_std": s.count_noise_std if s.adaptive_clip else 0.0,
            "unclipped_fraction": float(np.mean([r.unclipped for r in reports])) if reports else math.nan,
            "unclipped_fraction_noised": noised_fraction,
            "delta_norm_median": float(np.median([r.delta_norm for r in reports])) if reports else math.nan,
            "update_norm": float(avg.norm()),
            "lr_server": lr,
            "server_noise_std": diag.std,
            "server_snr": diag.snr,
            "canaries_in_round": canaries_in_round,
            **audit,
            "audit_seconds": audit_seconds,
            "seconds": time.perf_counter() - t0,
        }

    def _resync(self, a: int, wait_s: float = 180.0) -> bool:
        """Wait for restarted actor ``a`` and hand it its clients' record-level histories (the server's
        ledger is the authority). False if it does not come back within ``wait_s`` or is out of restarts."""
        import ray
        from ray.exceptions import ActorDiedError, ActorUnavailableError, GetTimeoutError

        hosted = [k for k in range(self.num_clients) if self.plan.actor[k] == a]
        deadline = time.monotonic() + wait_s
        while True:
            try:
                ray.get(self.clients[a].restore_histories.remote(self.record_histories(hosted)), timeout=30)
                self.resync.discard(a)
                return True
            except ActorDiedError:
                return False
            except (ActorUnavailableError, GetTimeoutError):
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.5)

    def _collect(self, a: int, ref, ready: bool) -> tuple[ActorUpdate | None, str]:
        """Actor ``a``'s update, or None and why: a straggler past the round timeout (killed and restarted),
        a dead actor (restarted by Ray), or a malformed update (NaN, Inf or wrong shape: rejected).
        Failed clients contribute nothing; the fixed denominator keeps the accounting valid."""
        import ray

        if not ready:
            ray.kill(self.clients[a], no_restart=False)
            self.resync.add(a)
            return None, f"actor {a} straggled past server.round_timeout = {self.cfg.server.round_timeout}s"
        try:
            update: ActorUpdate = ray.get(ref)
        except Exception as exc:  # the actor died or raised: Ray restarts it (client.max_restarts)
            self.resync.add(a)
            cause = getattr(exc, "cause", None) or exc
            detail = str(cause).strip().splitlines()[-1][:200] if str(cause).strip() else ""
            return None, f"actor {a} failed: {type(cause).__name__}" + (f": {detail}" if detail else "")
        d = update.delta_sum
        if not isinstance(d, np.ndarray) or d.shape != tuple(self.weights.shape):
            return None, f"actor {a} sent a malformed update (shape {getattr(d, 'shape', None)}, " \
                         f"expected {tuple(self.weights.shape)})"
        if not np.isfinite(d).all():
            return None, f"actor {a} sent a non-finite update"
        return update, ""

    # --- empirical audit ------------------------------------------------------------------
    def audit(self) -> dict:
        """Audit columns for the current (final) model; NaN where that audit is off.

        ``eps_audit_lower``: the one-run canary audit's lower bound on the client-level epsilon at
        ``audit.confidence`` (Steinke, Nasr, Jagielski 2023), scoring canary j by <u_j, w_T - w_0>, at
        ``audit_delta`` (<= delta_client, see :func:`privacy.audit.audit_delta`); the claim it
        checks is ``eps_client_at_audit_delta``, the client-level ledger read at that delta.
        ``mia_auc``: the loss-threshold attack's AUC, training records against test records;
        ``mia_auc_bound``: the largest AUC the reported guarantees allow (NaN if none applies).
        """
        out = dict.fromkeys(AUDIT_COLUMNS, math.nan)
        if self.canaries is not None:
            conf = self.cfg.audit.confidence
            delta = audit_delta(canaries=self.canaries.count, delta=self.delta_client, confidence=conf)
            scores = self.canaries.scores(self.weights - self.initial_weights)
            result = one_run_audit(scores, self.canaries.included, delta=delta, confidence=conf)
            claimed = (self.client_level.epsilon(FEDERATION, delta=delta) if self.cfg.server.noise_multiplier > 0
                       else math.inf)
            out.update(eps_audit_lower=result.eps_lower, eps_client_at_audit_delta=claimed, audit_delta=delta,
                       audit_guesses=result.guesses, audit_correct=result.correct)
        if self.members is not None:
            out["mia_auc"] = loss_threshold_auc(self._losses(*self.members), self._losses(*self.nonmembers))
            out["mia_auc_bound"] = membership_auc_bound(
                eps_record=float(self.eps_record.max()) if self.cfg.client.dp else math.inf,
                delta_record=self.delta_record, eps_client=self.eps_client(), delta_client=self.delta_client)
        return out

    @torch.no_grad()
    def _losses(self, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> np.ndarray:
        """Per-record cross-entropy of the current global model."""
        load_flat_(self.params, self.weights)
        self.model.eval()
        return torch.cat([torch.nn.functional.cross_entropy(self.model(x[i:i + batch_size]), y[i:i + batch_size],
                                                            reduction="none")
                          for i in range(0, len(y), batch_size)]).numpy()

    @torch.no_grad()
    def evaluate(self, batch_size: int = 1000) -> tuple[float, float]:
        load_flat_(self.params, self.weights)
        self.model.eval()
        correct, loss = 0, 0.0
        for i in range(0, len(self.y_test), batch_size):
            out = self.model(self.x_test[i:i + batch_size])
            y = self.y_test[i:i + batch_size]
            loss += float(torch.nn.functional.cross_entropy(out, y, reduction="sum"))
            correct += int((out.argmax(1) == y).sum())
        return correct / len(self.y_test), loss / len(self.y_test)

    def get_weights(self) -> np.ndarray:
        return self.weights.numpy().copy()

    # --- checkpoints ----------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything a resumed run needs, as tensors and plain containers (``torch.load(weights_only=True)``).
        No RNG state is needed: every stream is derived from (seed, round)."""
        return {"round": self.round, "weights": self.weights.clone(), "clip": float(self.clip),
                "velocity": None if self.velocity is None else self.velocity.clone(),
                "record": self.record.state_dict(), "client_level": self.client_level.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.round = int(state["round"])
        self.weights = state["weights"].clone().float()
        self.clip = float(state["clip"])  # S_t: adaptive clipping continues where it stopped
        velocity = state.get("velocity")  # server momentum (absent in checkpoints without it)
        self.velocity = None if velocity is None else velocity.clone().float()
        self.record = Ledger.from_state_dict(state["record"])
        self.client_level = Ledger.from_state_dict(state["client_level"])
        self.eps_record = np.zeros(self.num_clients)
        self.eps_record_next = self._one_round_epsilons()
        if self.cfg.client.dp:
            for k in self.record.histories:
                self.eps_record[k] = self.record.epsilon(k, delta=self.delta_record)
                if self.eps_record_next is not None:
                    hist = self.record.histories[k] + [self._round_event(k)]
                    self.eps_record_next[k] = Ledger(self.record.accountant, {0: hist}).epsilon(
                        0, delta=self.delta_record)

    def record_histories(self, client_ids: list[int]) -> dict[int, list]:
        return {k: list(self.record.histories.get(k, [])) for k in client_ids}
