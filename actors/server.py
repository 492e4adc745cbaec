"""The server actor: noisy FedAvg (DP-FedAvg) with both ledgers, as a thin shell over Ray-free parts.

Each round: draw the cohort from the noise seed (:mod:`privacy.mechanisms.participation`: Poisson sampling, or
min_sep's cyclic groups, enforced), send the global
weights and the mechanism's client half to the client actors (:mod:`actors.dispatch`), book the
cohort's record-level events while they train (:mod:`privacy.accountants.ledgers`), aggregate and release
(:mod:`actors.aggregation`, :mod:`privacy.mechanisms.client_level`), book the client-level event, evaluate
(:mod:`actors.evaluation`) and return one metrics row (:mod:`actors.round_row`).
"""

from __future__ import annotations

import math
import os
import time

import numpy as np
import torch

from actors.aggregation import Aggregator
from actors.allocator import keep_freed_memory
from actors.client_plan import ClientPlan
from actors.dispatch import hard_timeout, train_cohort
from actors.evaluation import EVALUATION_COLUMNS, Evaluator
from actors.round_row import round_row
from actors.secure_step import SecureStep
from privacy.accountants.accounting import import_pld_in_background
from privacy.audit.canaries import Canaries
from privacy.config.experiment import ExperimentConfig
from privacy.mechanisms.choice import mechanism_for
from privacy.mechanisms.participation import participation_for


class ServerActor:
    """Holds the global model, the client actor handles, the mechanism and its ledgers. Wrap with ``ray.remote``."""

    def __init__(self, cfg: ExperimentConfig, clients: list, plan: ClientPlan, weights: np.ndarray, *,
                 num_threads: int = 1, mechanism=None, shared=None):
        """``mechanism``: the run's mechanism (default: :func:`privacy.mechanisms.choice.mechanism_for` the config);
        ``shared``: the driver's data (:class:`actors.model_inputs.SharedData`), which the evaluator takes
        instead of reading the files where this actor runs on the driver's node."""
        from actors.model_inputs import offering

        torch.set_num_threads(max(1, min(int(num_threads), os.cpu_count() or 1)))  # never more than this node's cores
        keep_freed_memory()
        if cfg.run.noise_seed is None:
            raise ValueError("run.noise_seed is unset: resolve the config first (orchestrator.resolve)")
        self.cfg, self.clients, self.plan = cfg, clients, plan
        num_clients = len(plan.actor)
        min_sep = cfg.server.participation == "min_sep"
        canaries = (Canaries(cfg.audit.canaries, len(weights), seed=cfg.run.seed,
                             sample_rate=cfg.server.clients_per_round / num_clients,
                             groups=cfg.server.groups if min_sep else 0) if cfg.audit.canaries else None)
        mechanism = mechanism or mechanism_for(cfg, dim=len(weights), sample_rates=plan.sample_rate, sizes=plan.sizes)
        self.aggregator = Aggregator(cfg, weights, mechanism=mechanism, canaries=canaries)
        self.ledgers = mechanism.ledgers(cfg, sample_rates=plan.sample_rate, steps=plan.steps)
        self.participation = participation_for(cfg, num_clients)
        if "pld" in {cfg.server.accountant, cfg.client.accountant if cfg.client.dp else None}:
            import_pld_in_background()  # while the client actors start, not in round 1 (benchmarks/startup.py)
        with offering(shared):  # the evaluator loads the data through actors.client.load_on_this_node
            self.evaluator = Evaluator(cfg)
        self.round = 0
        self.restarting: set[int] = set()  # client actors the last round left dead or killed

    def budget_exceeded_next_round(self) -> str:
        """Why one more round would exceed a target epsilon ('' if it would not)."""
        return self.ledgers.budget_exceeded_next_round()

    def run_round(self, round_idx: int) -> dict:
        t0 = time.perf_counter()
        s = self.cfg.server
        admitted = self.participation.cohort(round_idx)
        cohort = admitted.ids
        mechanism = self.aggregator.mechanism
        client_step = mechanism.client_step(round_idx, max(len(cohort), 1))
        protocol = self._protocol(round_idx, len(cohort)) if mechanism.secure else None
        collected = train_cohort(self.clients, self.plan, cohort, self.aggregator.weights.numpy(), round_idx,
                                 SecureStep(client_step, protocol) if mechanism.secure else client_step,
                                 round_timeout=s.round_timeout,
                                 on_dispatched=lambda: self._while_clients_train(round_idx, cohort),
                                 restarting=self.restarting)
        self.restarting = collected.restarting
        if mechanism.secure:
            step, summed, survivors, threshold = self._secure_step(round_idx, protocol, collected, cohort=len(cohort))
        else:
            step, summed, threshold = self.aggregator.step(round_idx, collected.updates), None, None
            survivors = tuple(r.client_id for r in step.reports)
        self.ledgers.book(mechanism.round_events(step.released, survivors=survivors, cohort=len(cohort),
                                                 threshold=threshold, ledgers=self.ledgers, admitted=cohort,
                                                 round_idx=round_idx))
        self.round = round_idx + 1
        mechanism.plan_round(self.ledgers, self.round)
        evaluate = self.round % self.cfg.run.eval_every == 0 or self.round == s.rounds
        evaluation = (self.evaluator.evaluate(self.aggregator.weights) if evaluate
                      else dict.fromkeys(EVALUATION_COLUMNS, math.nan))
        return round_row(round_number=self.round, cfg=self.cfg, cohort_size=len(cohort), collected=collected,
                         step=step, mechanism=mechanism, ledgers=self.ledgers, evaluation=evaluation,
                         seconds=time.perf_counter() - t0, secure=summed, skipped=admitted.skipped)

    def _while_clients_train(self, round_idx: int, cohort) -> None:
        """Book the cohort's record-level events; under secure aggregation also encode the canaries."""
        self.ledgers.book_cohort(cohort)
        if self.aggregator.mechanism.secure and self.aggregator.canaries is not None:
            self.aggregator.prepare_canaries(round_idx)

    def _secure_step(self, round_idx: int, protocol, collected, *, cohort: int):
        """The secure sum of the trained cohort and its release (None if the round could not unmask, or its
        realised events would pass a target): ``(step, secure sum, survivors, threshold)``."""
        from actors.secure_round import secure_sum

        mechanism = self.aggregator.mechanism
        summed = secure_sum(self.clients, collected.updates, protocol, round_idx,
                            timeout=hard_timeout(self.cfg.server.round_timeout), graph_seed=round_idx,
                            hold=lambda ids: self.ledgers.blocked(mechanism.held_events(
                                ids, cohort=cohort, threshold=protocol.threshold, ledgers=self.ledgers)))
        collected.failures += summed.failures + ([f"round not released: {summed.failure}"] if summed.failure else [])
        reports = [r for u in collected.updates for r in u.succeeded]
        step = self.aggregator.step_secure(round_idx, summed.ring_sum, survivors=summed.survivors, cohort=cohort,
                                           reports=reports)
        return step, summed, summed.survivor_ids, protocol.threshold

    def _protocol(self, round_idx: int, cohort: int):
        """The round's secure-aggregation parameters (a :class:`privacy.secagg.protocol.SecAggConfig`): ring,
        threshold t for the sampled cohort, graph, session."""
        from privacy.secagg.protocol import SecAggConfig

        sa, mech = self.cfg.secagg, self.aggregator.mechanism
        return SecAggConfig(dim=mech.grid_dim, bits=sa.bits, threshold=sa.threshold_for(cohort),
                            neighbours=sa.neighbours or None,  # k >= cohort - 1: every pair (harary_graph)
                            session=f"round {round_idx}".encode(), masked=sa.protocol == "full")

    def final_columns(self, evaluate: bool = True) -> dict:
        """The audit of the model as it stands, and with ``evaluate`` its validation and test accuracy and loss: the columns
        the last row of a run gets, whether the run ends at its last round or stops early for its budget
        (the round loop asks for the accuracy only where the row has none yet)."""
        agg = self.aggregator
        out = self.evaluator.audit(agg.weights, agg.initial_weights, agg.canaries, self.ledgers)
        if evaluate:
            out.update(self.evaluator.evaluate(agg.weights))
        return out

    def get_weights(self) -> np.ndarray:
        return self.aggregator.weights.numpy().copy()

    def state_dict(self) -> dict:
        """Everything a resumed run needs, as tensors and plain containers (``torch.load(weights_only=True)``).
        No RNG state is needed: every stream is derived from (seed, round)."""
        return {"round": self.round, **self.aggregator.state_dict(), **self.ledgers.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.round = int(state["round"])
        self.aggregator.load_state_dict(state)
        self.ledgers.load_state_dict(state)
        self.participation.replay(self.round)
        self.aggregator.mechanism.plan_round(self.ledgers, self.round)
