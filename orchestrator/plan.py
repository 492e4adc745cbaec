"""``fedfrontier plan``: every privacy figure of a config before anything trains.

Resolves the config as a run would (data, split, calibration: orchestrator.resolve), then plans each
guarantee the run will report with the accountant its ledger uses, for the schedule calibration assumes:

- record-level (one training example): every client sampled in every round;
- client-level (one client's data) against whoever sees only the released models: every round released
  (under DP-FTRL: the worst group of the min_sep schedule, every participation of it);
  (under secure aggregation every released round carries exactly mu, so this is what the run books);
- under secure aggregation, client-level against the server: a client that joins every round of full
  cohorts without drop-outs (and, for scale, one that joins its expected q T rounds). Drop-outs, colluders
  and short cohorts book less noise than that; the run checks each round's realised events before it
  unmasks the sum, and stops rather than pass a target.

No Ray, no training: seconds once the data (and any feature cache) is on disk.
"""

from __future__ import annotations

import math

from privacy.config.experiment import ExperimentConfig
from privacy.mechanisms.choice import mechanism_for

PUBLIC = "whoever sees only the released models"


def privacy_plan(cfg: ExperimentConfig) -> dict:
    """A flat dict of the resolved privacy parameters and the epsilon each guarantee will reach."""
    from orchestrator.resolve import resolve_config

    plan = resolve_config(cfg, capacity=(1.0, 0.0))
    c = plan.config
    d, s = c.data, c.server
    rates = plan.clients.sample_rate
    mechanism = mechanism_for(c, dim=plan.num_params, sample_rates=rates, sizes=plan.clients.sizes)
    out: dict = {"trust_model": "secure aggregation (untrusted server)" if mechanism.secure else "trusted server",
                 "clients": d.num_clients, "train_records": plan.n_train, "model": c.model.name,
                 "parameters": plan.num_params, "rounds": s.rounds,
                 "secagg_accountant": c.secagg.accountant if mechanism.secure else ""}
    if c.client.dp:
        out.update(_record_level(c, plan, mechanism))
    if s.noise_multiplier > 0 and mechanism.level == "client":
        out.update(_client_level(c, mechanism))
    out["record_sample_rate_min"], out["record_sample_rate_max"] = float(min(rates)), float(max(rates))
    return out


def _record_level(c: ExperimentConfig, plan, mechanism) -> dict:
    from privacy.accountants.accounting import epsilon

    rates, steps = plan.clients.sample_rate, plan.clients.steps
    out = {"noise_multiplier_local": c.client.noise_multiplier, "clip_local": c.client.max_grad_norm,
           "delta_record": c.client.delta, "record_accountant": c.client.accountant}
    if mechanism.level == "record":  # secure FedSGD: the silos' shares are one pooled DP-SGD step's noise
        from privacy.accountants.skellam import epsilon as skellam_epsilon

        eps = max(skellam_epsilon([mechanism.planned_event(sample_rate=q)[:4] + (c.server.rounds,)],
                                  delta=c.client.delta, accountant=c.secagg.accountant, gaussian=c.client.accountant)
                  for q in set(rates))
        out.update(_quantisation(mechanism), steps_record=c.server.rounds,
                   eps_record_max=eps, eps_record_holds_against="the server and " + PUBLIC)
        return out
    eps = max(epsilon([(c.client.noise_multiplier, q, k * c.server.rounds)], delta=c.client.delta,
                      accountant=c.client.accountant) for q, k in set(zip(rates, steps)))
    out.update(steps_record=max(steps) * c.server.rounds, eps_record_max=eps,
               eps_record_holds_against="the server and " + PUBLIC)
    return out


def _client_level(c: ExperimentConfig, mechanism) -> dict:
    from privacy.accountants.accounting import epsilon

    s = c.server
    q = s.clients_per_round / c.data.num_clients
    out = {"noise_multiplier_server": s.noise_multiplier, "clip_server": s.clip, "client_sample_rate": q,
           "delta_client": s.delta, "client_accountant": s.accountant}
    if s.adaptive_clip:  # server.clip stays 0: the clip starts at S_0 and follows the noised quantile
        out.update(clip_server=math.nan, clip_server_initial=s.initial_clip, clip_target_quantile=s.target_quantile)
    if s.mechanism == "dp_ftrl":
        from privacy.accountants.guarantee import GaussianDPAccountant

        out.update(client_sample_rate=math.nan, client_accountant="exact Gaussian DP",
                   participation=f"min_sep: {s.groups} groups in turn, a client in <= {s.participations} rounds "
                                 f">= {s.groups} apart (b = {s.min_separation})",
                   ftrl_bands=s.bands, sensitivity=mechanism.sensitivity(),
                   eps_client=GaussianDPAccountant().epsilon_of_total(mechanism.worst_total(), s.delta),
                   eps_client_holds_against=PUBLIC + " (the trusted server sees every clipped update)")
        return out
    if not mechanism.secure:
        out.update(eps_client=epsilon([(s.noise_multiplier, q, s.rounds)], delta=s.delta, accountant=s.accountant),
                   eps_client_holds_against=PUBLIC + " (the trusted server sees every clipped update)")
        return out
    from privacy.accountants.skellam import epsilon as skellam_epsilon, epsilon_unsampled

    planned, against_server = mechanism.planned_event(sample_rate=q), mechanism.planned_server_event()
    expected_joins = max(1, round(q * s.rounds))
    out.update(_quantisation(mechanism),
               eps_client=skellam_epsilon([planned[:4] + (s.rounds,)], delta=s.delta, accountant=c.secagg.accountant,
                                          gaussian=s.accountant),
               eps_client_holds_against=PUBLIC + " (cohort sizes and drop-outs kept from them)",
               colluders=c.secagg.colluders,
               eps_client_server_max=epsilon_unsampled([against_server[:4] + (s.rounds,)], delta=s.delta,
                                                       accountant=c.secagg.accountant),
               eps_client_server_expected=epsilon_unsampled([against_server[:4] + (expected_joins,)], delta=s.delta,
                                                            accountant=c.secagg.accountant),
               server_rounds_expected=expected_joins,
               eps_client_server_holds_against="the server, which knows the cohort: no amplification, the shares "
                                               f"of {c.secagg.colluders} colluding clients not counted")
    return out


def _quantisation(mech) -> dict:
    """The integer grid's figures: scale, sensitivity after rounding, noise variance, the dominating Gaussian."""
    from privacy.accountants.skellam_dominance import gdp_constant

    return {"secagg_bits": mech.config.bits, "secagg_scale": mech.scale, "l2_sensitivity_grid": mech.l2,
            "skellam_variance_grid": mech.mu, "skellam_constant_c": gdp_constant(mech.mu),
            "noise_multiplier_effective": math.sqrt(mech.mu) / (gdp_constant(mech.mu) * mech.l2)}


def _clip(plan: dict) -> str:
    """The server's clip as the plan line says it: fixed, or adaptive from S_0 towards a quantile."""
    if "clip_server_initial" in plan:
        return (f"adaptive from {plan['clip_server_initial']:.4g} (towards the {plan['clip_target_quantile']:.3g} "
                "quantile of update norms)")
    return f"{plan['clip_server']:.4g}"


def plan_lines(plan: dict) -> list[str]:
    """The plan as text, one figure a line, grouped by guarantee."""
    lines = [f"{plan['trust_model']}: {plan['clients']} clients, {plan['train_records']} training records, "
             f"model {plan['model']} ({plan['parameters']} parameters), {plan['rounds']} rounds"]
    if "eps_record_max" in plan:
        lines.append(f"record-level: sigma {plan['noise_multiplier_local']:.4g}, clip {plan['clip_local']:.4g}, "
                     f"q {plan['record_sample_rate_min']:.4g}..{plan['record_sample_rate_max']:.4g}, "
                     f"{plan['steps_record']} steps, delta {plan['delta_record']:.3g}: "
                     f"eps <= {plan['eps_record_max']:.4g} ({plan['record_accountant']} accountant) against "
                     f"{plan['eps_record_holds_against']}")
    if "participation" in plan:
        lines.append(f"client-level (DP-FTRL, {plan['ftrl_bands']}-banded): z {plan['noise_multiplier_server']:.4g}, "
                     f"clip {plan['clip_server']:.4g}, {plan['participation']}, sensitivity "
                     f"{plan['sensitivity']:.4g}, delta {plan['delta_client']:.3g}: eps <= {plan['eps_client']:.4g} "
                     f"against {plan['eps_client_holds_against']}")
    elif "eps_client" in plan:
        lines.append(f"client-level: z {plan['noise_multiplier_server']:.4g}, clip {_clip(plan)}, "
                     f"q {plan['client_sample_rate']:.4g}, {plan['rounds']} rounds, delta {plan['delta_client']:.3g}: "
                     f"eps <= {plan['eps_client']:.4g} against {plan['eps_client_holds_against']}")
    if "eps_client_server_max" in plan:
        lines.append(f"client-level against the server: eps <= {plan['eps_client_server_max']:.4g} for a client in "
                     f"every round, {plan['eps_client_server_expected']:.4g} in its expected "
                     f"{plan['server_rounds_expected']} ({plan['eps_client_server_holds_against']})")
    if "skellam_variance_grid" in plan:
        lines.append(f"secure aggregation: {plan['secagg_bits']} bits, scale {plan['secagg_scale']:.4g}, Delta_2 "
                     f"{plan['l2_sensitivity_grid']:.4g}, Skellam variance {plan['skellam_variance_grid']:.4g} "
                     f"(c = 1 + {plan['skellam_constant_c'] - 1:.2g}): effective multiplier "
                     f"{plan['noise_multiplier_effective']:.4g} ({plan['secagg_accountant']} accounting)")
    return lines
