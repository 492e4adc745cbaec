"""What a client actor needs for one round under secure aggregation: the mechanism's client half and the
round's protocol parameters. Picklable; built by the server every round."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # a central run's actors never import the secure-aggregation modules
    from privacy.mechanisms.distributed_dp import SkellamClientStep
    from privacy.secagg.protocol import SecAggConfig


@dataclass(frozen=True)
class SecureStep:
    skellam: SkellamClientStep  # clip, quantise, add the Skellam share, map to Z_2^b
    protocol: SecAggConfig  # ring, threshold, neighbours and session of this round's secure sum
