"""What the server measures on the global model: test accuracy and loss, and the final model's audit.

The audit has two parts (docs/privacy.md section 4): the one-run canary audit of client-level DP
(Steinke, Nasr, Jagielski 2023: score canary j by <u_j, w_T - w_0>, :mod:`privacy.audit.one_run`) and the
loss-threshold membership test (:mod:`privacy.audit.membership`) beside the AUC the guarantees allow.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from actors.client import load_on_this_node
from actors.holdout import holdout_of
from actors.local_training import load_flat_
from actors.models import build_model
from privacy.audit.one_run import audit_delta, one_run_audit
from privacy.audit.canaries import Canaries
from privacy.config.experiment import ExperimentConfig
from privacy.accountants.ledgers import PrivacyLedgers
from privacy.audit.membership import loss_threshold_auc, membership_auc_bound, membership_sample

EVALUATION_COLUMNS = ("val_accuracy", "val_loss", "test_accuracy", "test_loss")  # choose on val_*, report test_*
# Records per forward pass in evaluation. mnist_cnn evaluates 2.0x faster in batches of 128 than of 1,000, whose
# activations (147 MB at its second convolution) fall out of the caches; the small default tanh_cnn is 7 % slower
# (0.014 s a round on mnist5k) (benchmarks/evaluation.py).
EVAL_BATCH = 128
AUDIT_COLUMNS = ("eps_audit_lower", "eps_client_at_audit_delta", "audit_delta", "audit_guesses", "audit_correct",
                 "mia_auc", "mia_auc_bound")


class Evaluator:
    """The validation and test splits, the membership samples and one model to load weights into."""

    def __init__(self, cfg: ExperimentConfig, batch_size: int = EVAL_BATCH):
        self.cfg, self.batch_size = cfg, batch_size
        data = load_on_this_node(cfg)  # dropped when __init__ returns: the held-out splits stay
        pool, validation = holdout_of(cfg.data, data)
        self.test = data.tensors("test")
        self.validation = data.tensors("train", validation) if len(validation) else None
        self.members = self.nonmembers = None
        if cfg.audit.membership:  # members: clients' records (the pool), never the analyst's validation ones
            mem, non = membership_sample(len(pool), len(data.y_test), cfg.audit.membership_records,
                                         seed=cfg.run.seed)
            self.members, self.nonmembers = data.tensors("train", pool[mem]), data.tensors("test", non)
        c, h, _ = data.shape
        self.model = build_model(cfg.model.name, in_channels=c, num_classes=data.num_classes, image_size=h,
                                 seed=cfg.run.seed)
        self.params = list(self.model.parameters())

    def evaluate(self, weights: torch.Tensor) -> dict[str, float]:
        """``val_accuracy``, ``val_loss`` (NaN without a validation split), ``test_accuracy``, ``test_loss``
        of ``weights``: every choice is made on the first two, the last two are only reported."""
        val = self.accuracy_and_loss(weights, *self.validation) if self.validation is not None else (math.nan,) * 2
        return dict(zip(EVALUATION_COLUMNS, (*val, *self.accuracy_and_loss(weights, *self.test))))

    @torch.no_grad()
    def accuracy_and_loss(self, weights: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
        """(accuracy, mean cross-entropy) of ``weights`` on ``(x, y)``."""
        batch_size = self.batch_size
        load_flat_(self.params, weights)
        self.model.eval()
        correct, loss = 0, 0.0
        for i in range(0, len(y), batch_size):
            out = self.model(x[i:i + batch_size])
            loss += float(torch.nn.functional.cross_entropy(out, y[i:i + batch_size], reduction="sum"))
            correct += int((out.argmax(1) == y[i:i + batch_size]).sum())
        return correct / len(y), loss / len(y)

    @torch.no_grad()
    def losses(self, weights: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
        """Per-record cross-entropy of ``weights``."""
        batch_size = self.batch_size
        load_flat_(self.params, weights)
        self.model.eval()
        return torch.cat([torch.nn.functional.cross_entropy(self.model(x[i:i + batch_size]), y[i:i + batch_size],
                                                            reduction="none")
                          for i in range(0, len(y), batch_size)]).numpy()

    def audit(self, weights: torch.Tensor, initial_weights: torch.Tensor, canaries: Canaries | None,
              ledgers: PrivacyLedgers) -> dict:
        """Audit columns for ``weights`` (the final model); NaN where that audit is off.

        ``eps_audit_lower``: the canary audit's lower bound at ``audit.confidence``, at ``audit_delta``
        (<= delta_client, :func:`privacy.audit.one_run.audit_delta`); the claim it checks is
        ``eps_client_at_audit_delta``. ``mia_auc``: the loss-threshold attack's AUC, training records
        against test records; ``mia_auc_bound``: the largest AUC the reported guarantees allow."""
        out = dict.fromkeys(AUDIT_COLUMNS, math.nan)
        if canaries is not None:
            conf = self.cfg.audit.confidence
            delta = audit_delta(canaries=canaries.count, delta=ledgers.delta_client, confidence=conf)
            result = one_run_audit(canaries.scores(weights - initial_weights), canaries.included, delta=delta,
                                   confidence=conf)
            out.update(eps_audit_lower=result.eps_lower, eps_client_at_audit_delta=ledgers.eps_client(delta),
                       audit_delta=delta, audit_guesses=result.guesses, audit_correct=result.correct)
        if self.members is not None:
            out["mia_auc"] = loss_threshold_auc(self.losses(weights, *self.members),
                                                self.losses(weights, *self.nonmembers))
            out["mia_auc_bound"] = membership_auc_bound(
                eps_record=ledgers.eps_record_max(), delta_record=ledgers.delta_record,
                eps_client=ledgers.eps_client(), delta_client=ledgers.delta_client)
        return out
