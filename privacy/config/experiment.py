"""Experiment configuration: frozen, validated dataclasses loaded from TOML.

One section per concern, the same names users type in TOML files and in
``--set section.key=value`` overrides. Every field carries a trailing comment
with its unit or reason. Validation that needs only the config happens in
``__post_init__``; validation that needs the data (sizes, delta bounds) happens
in :func:`orchestrator.resolve.resolve_config`, still before Ray starts.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping, Sequence

from privacy.config.validation import (ConfigError, _check, _check_choice, _check_delta, _check_int,
                                _check_optional_positive, _finite)
from privacy.config.schema import checked_section
from privacy.config.secagg_section import SecAggSection, check_secagg_options

DATASETS = ("mnist5k", "digits", "mnist", "fashion-mnist", "cifar10", "npz")
PARTITIONS = ("iid", "dirichlet", "shards")
ACCOUNTANTS = ("rdp", "prv", "pld")
MODELS = ("auto", "mnist_cnn", "digits_cnn", "cifar_cnn", "tanh_cnn", "scatter_linear")
SCATTER_MODELS = ("scatter_linear",)  # models on data.features = "scatternet"
SAMPLINGS = ("poisson", "fixed")
MECHANISMS = ("dp_fedavg", "dp_ftrl")  # server.mechanism: independent or correlated (matrix-factorization) noise
PARTICIPATIONS = ("poisson", "min_sep")  # server.participation: privacy/mechanisms/participation.py
LR_SCHEDULES = ("constant", "cosine")  # server.lr_schedule, see actors/server_optimizer.py
FEATURES = ("pixels", "scatternet")  # data.features, see actors/features.py
GRAD_SAMPLE_MODES = ("bookkeeping", "hooks", "functorch", "ew", "ghost")  # see actors/local_training.py


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "mnist5k"  # mnist5k | digits | mnist | fashion-mnist | cifar10 | npz
    root: str = ""  # folder for torchvision data sets; the .npz file path for dataset = "npz"
    partition: str = "iid"  # iid | dirichlet | shards
    alpha: float = 0.5  # Dirichlet concentration; smaller = more label skew
    shards_per_client: int = 2  # label shards per client for partition = "shards"
    num_clients: int = 10  # federated clients N
    min_client_size: int = 8  # smallest shard any client may get (records)
    test_fraction: float = 0.2  # held-out share, for data sets without a test split
    validation: float = 0.1  # held out of the training pool for every choice, never a client's: fraction < 1 or count >= 1; 0 = none
    split_seed: int = 0  # seed of that stratified split (fixed apart from run.seed: same test set)
    download: bool = False  # let torchvision download (off: runs never touch the network)
    features: str = "pixels"  # pixels | scatternet (fixed wavelet features, cached on disk; no privacy cost)

    def __post_init__(self) -> None:
        _check_choice("data.dataset", self.dataset, DATASETS)
        _check_choice("data.partition", self.partition, PARTITIONS)
        _check_choice("data.features", self.features, FEATURES)
        _check(_finite("data.alpha", self.alpha) > 0, "data.alpha", self.alpha, "must be > 0")
        _check_int("data.shards_per_client", self.shards_per_client, 1)
        _check_int("data.num_clients", self.num_clients, 1)
        _check_int("data.min_client_size", self.min_client_size, 1)
        _check_int("data.split_seed", self.split_seed, 0)
        tf = _finite("data.test_fraction", self.test_fraction)
        _check(0 < tf < 1, "data.test_fraction", self.test_fraction, "must be in (0, 1)")
        v = _finite("data.validation", self.validation)
        _check(v >= 0 and (v < 1 or v.is_integer()), "data.validation", self.validation,
               "must be 0 (none), a fraction in (0, 1) or a whole number of records")
        if self.dataset in ("npz", "mnist", "fashion-mnist", "cifar10"):
            _check(bool(self.root), "data.root", self.root, f"dataset {self.dataset!r} needs data.root")
        if self.root and "://" not in self.root:  # absolute now: actors and trials run in other directories
            object.__setattr__(self, "root", str(Path(self.root).expanduser().resolve()))


@dataclass(frozen=True)
class ModelConfig:
    name: str = "auto"  # auto picks the CNN that fits the data set's image size

    def __post_init__(self) -> None:
        _check_choice("model.name", self.name, MODELS)


@dataclass(frozen=True)
class ClientConfig:
    dp: bool = True  # record-level DP-SGD on each client (False: the non-private baseline)
    noise_multiplier: float = 1.0  # sigma: Gaussian noise std / max_grad_norm, per step
    max_grad_norm: float = 1.0  # C: per-sample gradient clip (L2)
    target_epsilon: float | None = None  # calibrate sigma so that max-client eps <= this
    delta: float | None = None  # record-level delta; default 1 / n_train^1.1
    accountant: str = "pld"  # pld (tightest upper bound, pessimistic) | prv | rdp (looser by 8-22 %)
    lr: float = 0.5  # local SGD learning rate
    momentum: float = 0.0  # local SGD momentum (state reset every round)
    batch_size: int = 32  # expected Poisson batch size (sample rate = batch_size / shard size)
    local_epochs: float = 1.0  # local passes over the shard per round
    local_steps: int = 0  # fixed local steps per round; 0 = derive from local_epochs
    grad_sample_mode: str = "bookkeeping"  # per-sample clipping engine; fastest measured (BENCHMARKS.md)
    num_cpus: float = 1.0  # Ray CPUs per client actor (fractions allowed)
    num_gpus: float = 0.0  # Ray GPUs per client actor (fractions share a device)
    num_actors: int = 0  # client actors; 0 = one per client up to the cluster's CPUs/GPUs
    max_restarts: int = 3  # Ray restarts of a dead client actor (its clients miss that round only)

    def __post_init__(self) -> None:
        _check(isinstance(self.dp, bool), "client.dp", self.dp, "must be true or false")
        _check(_finite("client.noise_multiplier", self.noise_multiplier) >= 0,
               "client.noise_multiplier", self.noise_multiplier, "must be >= 0")
        _check(_finite("client.max_grad_norm", self.max_grad_norm) > 0,
               "client.max_grad_norm", self.max_grad_norm, "must be > 0")
        _check_optional_positive("client.target_epsilon", self.target_epsilon)
        _check_delta("client.delta", self.delta)
        _check_choice("client.accountant", self.accountant, ACCOUNTANTS)
        _check(_finite("client.lr", self.lr) > 0, "client.lr", self.lr, "must be > 0")
        m = _finite("client.momentum", self.momentum)
        _check(0 <= m < 1, "client.momentum", self.momentum, "must be in [0, 1)")
        _check_int("client.batch_size", self.batch_size, 1)
        _check(_finite("client.local_epochs", self.local_epochs) > 0,
               "client.local_epochs", self.local_epochs, "must be > 0")
        _check_int("client.local_steps", self.local_steps, 0)
        _check_choice("client.grad_sample_mode", self.grad_sample_mode, GRAD_SAMPLE_MODES)
        _check(_finite("client.num_cpus", self.num_cpus) >= 0, "client.num_cpus", self.num_cpus, "must be >= 0")
        _check(_finite("client.num_gpus", self.num_gpus) >= 0, "client.num_gpus", self.num_gpus, "must be >= 0")
        _check(self.num_gpus <= 1 or float(self.num_gpus).is_integer(), "client.num_gpus", self.num_gpus,
               "fractions are allowed only below 1 (Ray's rule)")
        _check_int("client.num_actors", self.num_actors, 0)
        _check_int("client.max_restarts", self.max_restarts, 0)
        if self.dp and self.target_epsilon is None:
            _check(self.noise_multiplier > 0, "client.noise_multiplier", self.noise_multiplier,
                   "must be > 0 when client.dp is on (set client.dp = false for the non-private baseline)")


@dataclass(frozen=True)
class ServerConfig:
    rounds: int = 20  # federated rounds T
    clients_per_round: int = 10  # expected cohort m; sample rate q = m / N
    sampling: str = "poisson"  # poisson (accounted exactly) | fixed (accounted as Poisson)
    noise_multiplier: float = 0.0  # z: server noise std / clip; 0 = no client-level DP
    clip: float = 0.0  # S: client-delta L2 clip; 0 = no clipping
    target_epsilon: float | None = None  # calibrate z so that client-level eps <= this
    delta: float | None = None  # client-level delta; default 1 / N^1.1
    accountant: str = "pld"  # pld (tightest upper bound, pessimistic) | prv | rdp (looser by 8-22 %)
    lr: float = 1.0  # server learning rate applied to the noisy average delta
    lr_schedule: str = "constant"  # constant | cosine (decay to 0 over the rounds): post-processing
    momentum: float = 0.0  # server momentum beta (FedAvgM): post-processing, no privacy cost
    broadcast_noise: float = 0.0  # std added to the broadcast model: post-processing, NO privacy gain
    num_cpus: float = 0.0  # Ray CPUs for the server actor (it mostly waits)
    in_driver: bool = False  # run the server in the driver's process, not an actor: one torch process fewer at start
    round_timeout: float = 0.0  # seconds before a client actor counts as failed; 0 = wait forever
    adaptive_clip: bool = False  # set S each round from a noised quantile estimate (Andrew et al. 2021)
    target_quantile: float = 0.5  # gamma: share of client deltas meant to fall under the clip
    clip_lr: float = 0.2  # eta: geometric step of the clip update, S <- S exp(-eta (b - gamma))
    initial_clip: float = 0.1  # S_0 for adaptive clipping (server.clip stays 0 then)
    clip_count_std: float | None = None  # sigma_b: noise std on the clip-bit count; default m / 20
    mechanism: str = "dp_fedavg"  # dp_fedavg (fresh noise every round) | dp_ftrl (banded matrix factorization: noise correlated across rounds; needs participation = min_sep)
    participation: str = "poisson"  # poisson (server.sampling every round, amplified) | min_sep (cyclic cohorts: each client at most k rounds, >= b apart; no sampling assumed)
    min_separation: int = 1  # b: fewest rounds between two participations of a client under min_sep
    max_participations: int | None = None  # k: most rounds a client joins under min_sep; None = ceil(rounds / b)
    ftrl_bands: int | None = None  # bands of DP-FTRL's Toeplitz strategy C (<= b); None = server.min_separation

    @property
    def participations(self) -> int:
        """k in use under min_sep: the configured value or ceil(T / b)."""
        return self.max_participations if self.max_participations is not None else -(-self.rounds // self.min_separation)

    @property
    def bands(self) -> int:
        """DP-FTRL's bands in use: the configured value or b."""
        return self.ftrl_bands if self.ftrl_bands is not None else self.min_separation

    @property
    def groups(self) -> int:
        """G = max(b, ceil(T / k)): under min_sep the clients are split into G groups that take turns, so a client
        joins every G rounds (>= b apart), at most ceil(T / G) <= k times."""
        return max(self.min_separation, -(-self.rounds // self.participations))

    @property
    def count_noise_std(self) -> float:
        """sigma_b in use: the configured value or Andrew et al.'s default m / 20."""
        return self.clip_count_std if self.clip_count_std is not None else self.clients_per_round / 20

    def __post_init__(self) -> None:
        _check_int("server.rounds", self.rounds, 1)
        _check_int("server.clients_per_round", self.clients_per_round, 1)
        _check_choice("server.sampling", self.sampling, SAMPLINGS)
        _check(_finite("server.noise_multiplier", self.noise_multiplier) >= 0,
               "server.noise_multiplier", self.noise_multiplier, "must be >= 0")
        _check(_finite("server.clip", self.clip) >= 0, "server.clip", self.clip, "must be >= 0 (0 = no clipping)")
        _check_optional_positive("server.target_epsilon", self.target_epsilon)
        _check_delta("server.delta", self.delta)
        _check_choice("server.accountant", self.accountant, ACCOUNTANTS)
        _check(_finite("server.lr", self.lr) > 0, "server.lr", self.lr, "must be > 0")
        _check_choice("server.lr_schedule", self.lr_schedule, LR_SCHEDULES)
        mom = _finite("server.momentum", self.momentum)
        _check(0 <= mom < 1, "server.momentum", self.momentum, "must be in [0, 1)")
        _check(_finite("server.broadcast_noise", self.broadcast_noise) >= 0,
               "server.broadcast_noise", self.broadcast_noise, "must be >= 0")
        _check(_finite("server.num_cpus", self.num_cpus) >= 0, "server.num_cpus", self.num_cpus, "must be >= 0")
        _check(isinstance(self.in_driver, bool), "server.in_driver", self.in_driver, "must be true or false")
        _check(not (self.in_driver and self.num_cpus > 0), "server.in_driver", self.in_driver,
               "cannot reserve server.num_cpus: the driver's process is not a Ray actor (set one of them)")
        _check(_finite("server.round_timeout", self.round_timeout) >= 0,
               "server.round_timeout", self.round_timeout, "must be >= 0 (0 = no timeout)")
        _check(isinstance(self.adaptive_clip, bool), "server.adaptive_clip", self.adaptive_clip,
               "must be true or false")
        tq = _finite("server.target_quantile", self.target_quantile)
        _check(0 < tq < 1, "server.target_quantile", self.target_quantile, "must be in (0, 1)")
        _check(_finite("server.clip_lr", self.clip_lr) > 0, "server.clip_lr", self.clip_lr, "must be > 0")
        _check(_finite("server.initial_clip", self.initial_clip) > 0, "server.initial_clip", self.initial_clip,
               "must be > 0")
        _check_optional_positive("server.clip_count_std", self.clip_count_std)
        self._check_participation()
        if self.adaptive_clip:
            _check(self.clip == 0, "server.clip", self.clip,
                   "must stay 0 with server.adaptive_clip = true: the clip starts at server.initial_clip and "
                   "adapts every round")
            check_adaptive_noise(self.noise_multiplier, self.count_noise_std)
        elif self.noise_multiplier > 0 or self.target_epsilon is not None:
            _check(self.clip > 0, "server.clip", self.clip,
                   "must be > 0 when server noise is on: noise is calibrated to the clip (sensitivity); "
                   "or set server.adaptive_clip = true")

    def _check_participation(self) -> None:
        _check_choice("server.mechanism", self.mechanism, MECHANISMS)
        _check_choice("server.participation", self.participation, PARTICIPATIONS)
        _check_int("server.min_separation", self.min_separation, 1)
        _check(self.min_separation <= self.rounds, "server.min_separation", self.min_separation,
               f"must be <= server.rounds ({self.rounds})")
        if self.max_participations is not None:
            _check_int("server.max_participations", self.max_participations, 1)
        if self.ftrl_bands is not None:
            _check_int("server.ftrl_bands", self.ftrl_bands, 1)
            _check(self.ftrl_bands <= self.min_separation, "server.ftrl_bands", self.ftrl_bands,
                   f"must be <= server.min_separation ({self.min_separation}): two participations of a client "
                   "then touch disjoint rows of C, which is what the sensitivity bound uses")
        if self.mechanism == "dp_ftrl":
            _check(self.participation == "min_sep", "server.participation", self.participation,
                   "must be min_sep with server.mechanism = dp_ftrl: its guarantee assumes no sampling, only "
                   "a bound on how often and how closely a client joins")
        else:
            _check(self.participation == "poisson", "server.participation", self.participation,
                   "min_sep needs server.mechanism = dp_ftrl (ftrl_bands = 1 gives independent noise without "
                   "amplification by sampling)")

    @property
    def clipping(self) -> bool:
        """Whether client deltas are clipped at all (fixed S > 0, or adaptive)."""
        return self.adaptive_clip or self.clip > 0


def check_adaptive_noise(noise_multiplier: float, count_noise_std: float) -> None:
    """Adaptive clipping splits the requested multiplier z between the deltas and the clip-bit count;
    that is possible only for z < 2 sigma_b (see ``adaptive_clipping_delta_multiplier``)."""
    _check(noise_multiplier < 2 * count_noise_std, "server.clip_count_std", count_noise_std,
           f"adaptive clipping needs server.noise_multiplier z = {noise_multiplier:.4g} < 2 * clip_count_std; "
           f"raise server.clip_count_std above {noise_multiplier / 2:.4g} (noisier clip estimate) or lower z "
           f"(raise server.target_epsilon)")


def check_min_sep_cohort(server: ServerConfig, num_clients: int) -> None:
    """Under min_sep the N clients take turns in G groups: every group needs a client, and the fixed
    denominator m (server.clients_per_round) is a group's size, N / G rounded either way."""
    g, n = server.groups, num_clients
    _check(n >= g, "data.num_clients", n, f"must be >= the {g} groups that take turns under "
           f"server.participation = min_sep (max(b, ceil(rounds / k)))")
    _check(n // g <= server.clients_per_round <= -(-n // g), "server.clients_per_round", server.clients_per_round,
           f"must be a group's size under min_sep: {n} clients in {g} groups give {n // g}"
           + ("" if n % g == 0 else f" or {-(-n // g)}"))


@dataclass(frozen=True)
class AuditConfig:
    canaries: int | None = None  # one-run audit canary clients, each in w.p. 1/2; None: up to 1000 if client DP is on
    confidence: float = 0.95  # confidence of eps_audit_lower
    membership: bool = True  # loss-threshold membership-inference AUC on the final model
    membership_records: int = 500  # members drawn from the training records; as many test records as non-members

    def __post_init__(self) -> None:
        if self.canaries is not None:
            _check_int("audit.canaries", self.canaries, 0)
        conf = _finite("audit.confidence", self.confidence)
        _check(0.5 <= conf < 1, "audit.confidence", self.confidence, "must be in [0.5, 1)")
        _check(isinstance(self.membership, bool), "audit.membership", self.membership, "must be true or false")
        _check_int("audit.membership_records", self.membership_records, 1)


@dataclass(frozen=True)
class RunConfig:
    seed: int = 0  # seeds the split, the initial model and the audit's canaries: the same across trials
    noise_seed: int | None = None  # seeds every noise and sampling stream; None = fresh OS entropy per run/trial; kept only in secrets.json
    name: str = "run"  # label carried into result tables
    eval_every: int = 1  # evaluate the global model every k rounds (and always the last)
    checkpoint_every: int = 5  # rounds between checkpoints of a run or a sweep trial (and always the last)

    def __post_init__(self) -> None:
        _check_int("run.checkpoint_every", self.checkpoint_every, 1)
        _check_int("run.seed", self.seed, 0)
        if self.noise_seed is not None:
            _check_int("run.noise_seed", self.noise_seed, 0)
        _check(isinstance(self.name, str) and bool(self.name), "run.name", self.name, "must be a non-empty string")
        _check_int("run.eval_every", self.eval_every, 1)


@dataclass(frozen=True)
class ExperimentConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    client: ClientConfig = field(default_factory=ClientConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    secagg: SecAggSection = field(default_factory=SecAggSection)
    audit: AuditConfig = field(default_factory=AuditConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def __post_init__(self) -> None:
        _check(self.server.clients_per_round <= self.data.num_clients, "server.clients_per_round",
               self.server.clients_per_round, f"must be <= data.num_clients ({self.data.num_clients})")
        _check(not (self.server.mechanism == "dp_ftrl" and self.secagg.enabled), "server.mechanism",
               self.server.mechanism, "dp_ftrl runs under a trusted server only: it cannot be combined with "
               "secagg.enabled (the correlated noise would have to be shared out among the clients)")
        check_secagg_options(self.secagg, self.server, self.client, self.data, self.audit)  # first: it names the mode
        if self.server.participation == "min_sep":
            check_min_sep_cohort(self.server, self.data.num_clients)
        if self.audit.canaries:
            _check(self.server.clipping, "audit.canaries", self.audit.canaries,
                   "canary updates have the clip's norm: needs server.clip > 0 or server.adaptive_clip = true")
        if self.model.name != "auto":  # a pixel CNN cannot read 7x7 feature maps, nor the reverse
            scatter_model = self.model.name in SCATTER_MODELS
            _check(scatter_model == (self.data.features == "scatternet"), "model.name", self.model.name,
                   f"data.features = {self.data.features!r} needs model.name = "
                   + ("auto or one of " + ", ".join(SCATTER_MODELS) if self.data.features == "scatternet"
                      else "auto or a pixel model"))

    def flat(self) -> dict[str, Any]:
        """The whole config as one flat dict, ``{"section.key": value}``."""
        return {f"{s.name}.{f.name}": getattr(getattr(self, s.name), f.name)
                for s in fields(self) for f in fields(getattr(self, s.name))}

    def replace(self, **sections: Mapping[str, Any]) -> "ExperimentConfig":
        """A copy with some keys of some sections changed: ``cfg.replace(server={"clip": 1.0})``."""
        return from_dict({**_nested(self), **{k: {**_nested(self)[k], **v} for k, v in sections.items()}})


_SECTION_CLASSES = {"data": DataConfig, "model": ModelConfig, "client": ClientConfig,
                    "server": ServerConfig, "secagg": SecAggSection, "audit": AuditConfig, "run": RunConfig}


def _nested(cfg: ExperimentConfig) -> dict[str, dict[str, Any]]:
    return {name: dataclasses.asdict(getattr(cfg, name)) for name in _SECTION_CLASSES}


def from_dict(raw: Mapping[str, Any]) -> ExperimentConfig:
    """Build a validated config from nested ``{section: {key: value}}``: every value through the schema
    (:mod:`privacy.config.schema`: exact types, size caps), then each section's rules; unknown keys are errors."""
    sections: dict[str, Any] = {}
    for section, values in raw.items():
        if section not in _SECTION_CLASSES:
            raise ConfigError(section, values, f"unknown section; allowed: {', '.join(_SECTION_CLASSES)}")
        if not isinstance(values, Mapping):
            raise ConfigError(section, values, "must be a table of keys")
        cls = _SECTION_CLASSES[section]
        sections[section] = cls(**checked_section(section, cls, values))  # exact types and size caps first
    return ExperimentConfig(**sections)


def parse_override(item: str) -> tuple[str, str, Any]:
    """``"client.lr=0.1"`` -> ``("client", "lr", 0.1)``. Values are TOML literals; bare words are strings;
    ``none``/``null`` unset an optional value."""
    if "=" not in item:
        raise ConfigError(item, item, "an override must look like section.key=value")
    key, text = item.split("=", 1)
    key, text = key.strip(), text.strip()
    if key.count(".") != 1:
        raise ConfigError(key, text, "an override key must look like section.key")
    section, name = key.split(".")
    if text.lower() in ("none", "null"):
        return section, name, None
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        value = text
    return section, name, value


def override_items(overrides: Sequence[str] | Mapping[str, Any]) -> list[tuple[str, str, Any]]:
    """``--set`` strings (:func:`parse_override`) or a mapping ``{"section.key": value}`` of Python values
    (the Python API's), as ``(section, key, value)``."""
    if isinstance(overrides, str):
        raise ConfigError("--set", overrides, "overrides are a list of section.key=value strings or a mapping")
    if not isinstance(overrides, Mapping):
        return [parse_override(item) for item in overrides]
    items = []
    for key, value in overrides.items():
        if not isinstance(key, str) or key.count(".") != 1:
            raise ConfigError(str(key), value, "an override key must look like section.key")
        section, name = key.split(".")
        items.append((section, name, value))
    return items


def read_toml(path: str | Path | None) -> dict[str, Any]:
    """The TOML file's tables ({} for no file); a missing or malformed file is a ConfigError on --config."""
    if path is None:
        return {}
    p = Path(path)
    if not p.is_file():
        raise ConfigError("--config", str(path), "file not found")
    try:
        return tomllib.loads(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError("--config", str(path), f"not UTF-8 text (byte {exc.start}); TOML files are UTF-8") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("--config", str(path), f"not valid TOML ({exc})") from exc


def load_config(path: str | Path | None = None,
                overrides: Sequence[str] | Mapping[str, Any] = ()) -> ExperimentConfig:
    """Load a TOML file (or the defaults), apply overrides (``section.key=value`` strings or a mapping
    ``{"section.key": value}``), validate. A ``[sweep]`` table is left to ``fedfrontier sweep``: one run of a
    sweep's file is its base config."""
    raw = {k: dict(v) if isinstance(v, Mapping) else v for k, v in read_toml(path).items() if k != "sweep"}
    for section, name, value in override_items(overrides):
        if section not in _SECTION_CLASSES:
            raise ConfigError(section, value, f"unknown section; allowed: {', '.join(_SECTION_CLASSES)}")
        raw.setdefault(section, {})
        if value is None:
            raw[section].pop(name, None)
            raw[section][name] = None
        else:
            raw[section][name] = value
    return from_dict(raw)


def to_dict(cfg: ExperimentConfig) -> dict[str, dict[str, Any]]:
    """Nested plain dict (JSON/TOML-ready) of a config."""
    return _nested(cfg)
