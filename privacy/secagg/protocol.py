"""Secure aggregation over Z_{2^b}, one round, semi-honest server: the honest-but-curious protocol of Bonawitz
et al. 2017, "Practical Secure Aggregation for Privacy-Preserving Machine Learning", CCS. Client u uploads
y_u = x_u + PRG(b_u) + sum_{v in N(u), v > u} PRG(s_uv) - sum_{v in N(u), v < u} PRG(s_uv) mod 2^b, with
s_uv = HKDF(X25519(u, v)) = s_vu (pairwise masks cancel in the sum) and b_u a fresh self-mask seed. b_u and
u's mask key are Shamir-shared (threshold t) with N(u), AES-GCM-encrypted under a second agreed key, so the
server only routes them. To unmask, each survivor reveals per client u the share of b_u if u survived, of
u's mask key if u dropped -- never both. N(u): everyone, or k neighbours on a random Harary graph (Bell et
al. 2020, "Secure Single-Server Aggregation with (Poly)Logarithmic Overhead", CCS). Messages are frozen
dataclasses that actors can carry. A server colluding with fewer than t clients (of a neighbourhood)
learns only the sum. Each client draws everything from one ChaCha20 stream keyed by OS entropy unless
``entropy`` is given (reproducible tests only).
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass
from functools import lru_cache, reduce
from typing import Mapping, Sequence

import numpy as np
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

PRIME = 2 ** 521 - 1  # Mersenne prime field of the Shamir shares: a 256-bit key fits in one element
_FIELD_BYTES = 66  # bytes of one field element (521 bits)
_RAW = dict(encoding=Encoding.Raw, format=PublicFormat.Raw)


class RandomStream:
    """Cryptographic byte stream (ChaCha20 keystream); key from ``entropy`` (hashed) or from the OS."""

    def __init__(self, entropy: bytes | None = None):
        key = secrets.token_bytes(32) if entropy is None else _kdf(bytes(entropy), b"stream")
        self._enc = Cipher(algorithms.ChaCha20(key, bytes(16)), mode=None).encryptor()

    def bytes(self, n: int) -> bytes:  # the next n bytes of the keystream
        return self._enc.update(bytes(n))

    def field_element(self) -> int:  # uniform on [0, PRIME): 521 random bits, rejected if all ones
        while (v := int.from_bytes(self.bytes(_FIELD_BYTES), "big") & PRIME) == PRIME:
            pass
        return v


def shamir_share(secret: int, *, threshold: int, holders: Sequence[int], rng: RandomStream) -> dict[int, int]:
    """Shamir (1979) t-of-n sharing over GF(2^521 - 1): f(x) = secret + a_1 x + ... + a_{t-1} x^{t-1} with
    uniform a_i; holder v gets f(v + 1). Any t shares determine the secret; any t - 1 are uniform."""
    if not 0 <= secret < PRIME or not 1 <= threshold <= len(holders):
        raise ValueError(f"need 0 <= secret < 2^521 - 1 and 1 <= threshold ({threshold}) <= holders ({len(holders)})")
    coeffs = [secret] + [rng.field_element() for _ in range(threshold - 1)]
    return {int(v): reduce(lambda y, c: (y * (v + 1) + c) % PRIME, reversed(coeffs), 0) for v in holders}  # Horner


def shamir_reconstruct(shares: Mapping[int, int]) -> int:
    """Lagrange interpolation at 0 of the given shares {holder v: f(v + 1)}. Equals the secret when at
    least t shares are given; with fewer it is a value unrelated to the secret.

    secret = sum_i y_i prod_{j != i} x_j / (x_j - x_i). The points x are small integers (holder ids + 1), so each
    numerator and denominator is an exact integer product, reduced once; the denominators are then inverted
    together (one modular inverse and three products each, Montgomery's trick) instead of one inverse each."""
    xs, ys = [v + 1 for v in shares], list(shares.values())
    everything = math.prod(xs)
    nums = [everything // xi for xi in xs]  # prod_{j != i} x_j, exactly
    dens = [math.prod(xj - xi for xj in xs if xj != xi) % PRIME for xi in xs]  # the points are distinct
    prefix = [1]  # prefix[i] = dens[0] ... dens[i - 1]
    for den in dens:
        prefix.append(prefix[-1] * den % PRIME)
    inverse, secret = pow(prefix[-1], -1, PRIME), 0  # inverse of dens[0] ... dens[i] as i steps down
    for i in reversed(range(len(dens))):
        secret = (secret + ys[i] * nums[i] % PRIME * (inverse * prefix[i] % PRIME)) % PRIME
        inverse = inverse * dens[i] % PRIME
    return secret


def prg_words(seed: bytes, *, dim: int, bits: int = 32) -> np.ndarray:
    """AES-256-CTR keystream of ``seed`` read as ``dim`` words of the narrowest unsigned type whose range 2^16 or
    2^32 is a multiple of 2^bits (:func:`word_type`): masks summed in that type's arithmetic (which wraps mod
    its range) and reduced mod 2^bits once, at the end. 16-bit words halve the keystream of a 16-bit ring."""
    word = word_type(bits)
    enc = Cipher(algorithms.AES(seed), modes.CTR(bytes(16))).encryptor()
    return np.frombuffer(enc.update(bytes(word().itemsize * dim)), dtype=np.dtype(word).newbyteorder("<"))


def word_type(bits: int) -> type:
    """uint16 for rings of up to 16 bits, uint32 up to 32: the masks' arithmetic type."""
    return np.uint16 if bits <= 16 else np.uint32


def harary_graph(ids: Sequence[int], *, k: int | None, seed: int) -> dict[int, frozenset[int]]:
    """Neighbour sets: complete graph if k is None or k >= n - 1; else the k-regular Harary graph on a
    random ring order drawn from the public ``seed`` (each client linked to k/2 on either side)."""
    ids = sorted(int(i) for i in ids)
    n = len(ids)
    if k is None or k >= n - 1:
        return {u: frozenset(ids) - {u} for u in ids}
    ring = [ids[i] for i in np.random.default_rng(seed).permutation(n)]
    return {ring[i]: frozenset(ring[(i + j) % n] for j in range(-(k // 2), k // 2 + 1) if j) for i in range(n)}


def components(graph: Mapping[int, frozenset[int]], nodes) -> list[frozenset[int]]:
    """Connected components of the subgraph of ``graph`` induced by ``nodes``."""
    left, parts = set(nodes), []
    while left:
        start = left.pop()
        part, frontier = {start}, [start]
        while frontier:
            for v in graph[frontier.pop()] & left:
                left.discard(v)
                part.add(v)
                frontier.append(v)
        parts.append(frozenset(part))
    return parts


def masking_graph(ids: Sequence[int], config: "SecAggConfig", *, seed: int) -> dict[int, frozenset[int]]:
    """The round's public masking graph over the clients that trained; a ValueError if the threshold is above
    their number (no round could unmask)."""
    if config.threshold > len(ids):
        raise ValueError(f"threshold t = {config.threshold} above the cohort of {len(ids)} clients: "
                         "lower the threshold or enlarge the cohort")
    return harary_graph(ids, k=config.neighbours, seed=seed)


def check_survivors(graph: Mapping[int, frozenset[int]], survivors: frozenset[int], *, threshold: int) -> None:
    """A ValueError (nothing unmasked) if fewer than ``threshold`` clients sent their input, or if the survivors'
    masking graph falls apart: the pairwise masks of each connected part would cancel within it, and
    unmasking would reveal each part's sum, protected only by that part's own noise shares (Bell et al. 2020
    need it connected)."""
    if len(survivors) < threshold:
        raise ValueError(f"too many drop-outs: {len(survivors)} clients sent masked inputs, need t = {threshold}")
    parts = components(graph, survivors)
    if len(parts) > 1:
        raise ValueError(f"the survivors' masking graph is disconnected ({len(parts)} parts of sizes "
                         f"{sorted(len(p) for p in parts)}): unmasking would reveal each part's sum; refusing")


def check_holders(graph: Mapping[int, frozenset[int]], clients, survivors: frozenset[int], *, threshold: int) -> None:
    """What unmasking needs when every survivor answers (the sum-only path): for each client that took part,
    ``threshold`` holders of its secret among the survivors -- its self mask if it survived, its mask key if
    it dropped -- the holders being its neighbours and itself. :meth:`SecAggServer.unmask` counts the same
    shares from the messages it gets, with the same error."""
    for u in sorted(clients):
        held = len(survivors & (graph[u] | {u}))
        if held < threshold:
            what = "self mask" if u in survivors else "mask key"
            raise ValueError(f"too many drop-outs: {held} shares of client {u}'s {what}, need t = {threshold}")


@dataclass(frozen=True)
class SecAggConfig:
    dim: int  # length of every input vector
    bits: int  # ring Z_{2^bits}; the true sum must fit its signed range (privacy.secagg.quantization.to_ring)
    threshold: int  # t: shares that reconstruct a secret; pick t > half a neighbourhood
    neighbours: int | None = None  # k (even): sparse masking graph of Bell et al.; None = every pair
    session: bytes = b""  # round identifier, mixed into every derived key
    masked: bool = True  # False: the simulator's sum-only path (actors.secure_round), no keys, masks or shares

    def __post_init__(self):
        if self.dim < 1 or not 1 <= self.bits <= 32 or self.threshold < 1:
            raise ValueError(f"dim = {self.dim}, bits = {self.bits}, threshold = {self.threshold}: "
                             "need dim >= 1, 1 <= bits <= 32, threshold >= 1")
        if self.neighbours is not None and (self.neighbours < 2 or self.neighbours % 2):
            raise ValueError(f"neighbours = {self.neighbours}: use an even k >= 2, or None for every pair")
        if self.threshold > (self.neighbours or self.threshold) + 1:
            raise ValueError(f"threshold {self.threshold} above the {self.neighbours + 1} holders of each secret "
                             "(k neighbours + itself): lower the threshold or raise neighbours")


@dataclass(frozen=True)
class AdvertiseKeys:  # client -> server
    sender: int
    cipher_public: bytes  # X25519 key that encrypts the shares between clients
    mask_public: bytes  # X25519 key of the pairwise masks


@dataclass(frozen=True)
class KeyDirectory:  # server -> clients
    public_keys: Mapping[int, tuple[bytes, bytes]]  # client -> (cipher_public, mask_public)
    neighbours: Mapping[int, frozenset[int]]


@dataclass(frozen=True)
class SharedKeys:  # client -> server: one AES-GCM ciphertext of (share of b_u, share of mask key) per neighbour
    sender: int
    ciphertexts: Mapping[int, bytes]


@dataclass(frozen=True)
class ForwardedShares:  # server -> one client: the ciphertexts addressed to it
    receiver: int
    ciphertexts: Mapping[int, bytes]


@dataclass(frozen=True)
class MaskedInput:  # client -> server
    sender: int
    vector: np.ndarray  # uint64 in [0, 2^bits)


@dataclass(frozen=True)
class Survivors:  # server -> clients: who sent a masked input
    ids: frozenset[int]


@dataclass(frozen=True)
class UnmaskingShares:  # client -> server
    sender: int
    self_mask_shares: Mapping[int, int]  # survivor u -> this client's share of b_u
    key_shares: Mapping[int, int]  # dropped u -> this client's share of u's mask private key


@dataclass(frozen=True)
class SecAggDiagnostics:
    survivors: int  # clients whose input is in the sum
    dropped_after_sharing: int  # pairwise masks removed via reconstructed keys
    dropped_before_sharing: int  # advertised keys but never shared them: in no mask at all
    responders: int  # survivors that sent unmasking shares


def _kdf(secret: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"fedfrontier-secagg/" + info).derive(secret)


def _agree(own: X25519PrivateKey, peer_public: bytes, info: bytes) -> bytes:
    return _kdf(own.exchange(_public_key(peer_public)), info)


@lru_cache(maxsize=8192)
def _public_key(raw: bytes) -> X25519PublicKey:  # public: parsed once per actor, however many clients use it
    return X25519PublicKey.from_public_bytes(raw)


def _mask(own: X25519PrivateKey, peer_public: bytes, cfg: SecAggConfig) -> np.ndarray:
    return prg_words(_agree(own, peer_public, b"mask" + cfg.session), dim=cfg.dim, bits=cfg.bits)


class SecAggClient:
    """One client's side of one round: call advertise_keys, share_keys, masked_input, unmasking_shares."""

    def __init__(self, client_id: int, config: SecAggConfig, *, entropy: bytes | None = None):
        if not 0 <= client_id < 1 << 47:
            raise ValueError(f"client_id = {client_id}: must be in [0, 2^47)")
        self.id, self.config = int(client_id), config
        self._rng = RandomStream(None if entropy is None else bytes(entropy) + client_id.to_bytes(8, "big"))
        self._cipher_key = X25519PrivateKey.from_private_bytes(self._rng.bytes(32))
        self._mask_key = X25519PrivateKey.from_private_bytes(self._rng.bytes(32))
        self._self_seed = self._rng.bytes(32)
        self._directory, self._held = None, {}  # held: owner -> (share of b_owner, share of owner's mask key)
        self._share_keys: dict[int, bytes] = {}  # neighbour -> the AEAD key of the shares between us (share_keys)

    def advertise_keys(self) -> AdvertiseKeys:
        return AdvertiseKeys(self.id, self._cipher_key.public_key().public_bytes(**_RAW),
                             self._mask_key.public_key().public_bytes(**_RAW))

    def share_keys(self, directory: KeyDirectory) -> SharedKeys:
        if self.id not in directory.public_keys:
            raise ValueError(f"client {self.id} is not in the key directory: it cannot join this round")
        self._directory, t = directory, self.config.threshold
        holders = sorted(directory.neighbours[self.id] | {self.id})
        key_int = int.from_bytes(self._mask_key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()), "big")
        b = shamir_share(int.from_bytes(self._self_seed, "big"), threshold=t, holders=holders, rng=self._rng)
        s = shamir_share(key_int, threshold=t, holders=holders, rng=self._rng)
        self._held = {self.id: (b[self.id], s[self.id])}
        out = {}
        for v in holders:
            if v != self.id:  # the pair's share key serves both directions: kept for masked_input's decryption
                self._share_keys[v] = _agree(self._cipher_key, directory.public_keys[v][0], b"share" + self.config.session)
                aead = AESGCM(self._share_keys[v])
                plain = b[v].to_bytes(_FIELD_BYTES, "big") + s[v].to_bytes(_FIELD_BYTES, "big")
                out[v] = aead.encrypt((self.id << 48 | v).to_bytes(12, "big"), plain, self.config.session)
        return SharedKeys(self.id, out)

    def masked_input(self, x: np.ndarray, forwarded: ForwardedShares) -> MaskedInput:
        """x: integer vector (any signed/unsigned integer dtype), taken mod 2^bits."""
        cfg, d = self.config, self._directory
        if d is None or forwarded.receiver != self.id:
            raise ValueError("call share_keys first, and pass the shares forwarded to this client")
        x = np.asarray(x)
        if x.shape != (cfg.dim,) or not np.issubdtype(x.dtype, np.integer):
            raise ValueError(f"input must be an integer vector of shape ({cfg.dim},); got {x.dtype} {x.shape}")
        for u, ct in forwarded.ciphertexts.items():
            if u not in d.neighbours[self.id]:
                raise ValueError(f"shares from client {u}, not a neighbour of {self.id}")
            plain = AESGCM(self._share_keys[u]).decrypt((u << 48 | self.id).to_bytes(12, "big"), ct, cfg.session)
            self._held[u] = (int.from_bytes(plain[:_FIELD_BYTES], "big"), int.from_bytes(plain[_FIELD_BYTES:], "big"))
        # the words' arithmetic wraps mod 2^16 or 2^32, a multiple of 2^bits: the low bits are those of the exact sum
        word = word_type(cfg.bits)
        y = np.asarray(x, dtype=np.int64).astype(word) + prg_words(self._self_seed, dim=cfg.dim, bits=cfg.bits)
        for v in forwarded.ciphertexts:  # the neighbours that shared keys: exactly those that mask with us
            mask = prg_words(_agree(self._mask_key, d.public_keys[v][1], b"mask" + cfg.session), dim=cfg.dim,
                             bits=cfg.bits)
            if self.id < v:
                y += mask
            else:
                y -= mask
        return MaskedInput(self.id, (y & word((1 << cfg.bits) - 1)).astype(np.uint64))

    def unmasking_shares(self, survivors: Survivors) -> UnmaskingShares:
        if self.id not in survivors.ids:
            raise ValueError(f"client {self.id} is not among the survivors: it sends no unmasking shares")
        if len(survivors.ids) < (t := self.config.threshold):
            raise ValueError(f"too many drop-outs: {len(survivors.ids)} survivors, need t = {t}; refusing to unmask")
        alive = {u: b for u, (b, _) in self._held.items() if u in survivors.ids}
        dropped = {u: s for u, (_, s) in self._held.items() if u not in survivors.ids}
        return UnmaskingShares(self.id, alive, dropped)


class SecAggServer:
    """The aggregator's side of one round; it sees only the messages passed to its methods."""

    def __init__(self, config: SecAggConfig, *, graph_seed: int = 0):
        self.config, self._graph_seed = config, graph_seed  # the graph is public: a fixed seed is fine
        self._dir = self._total = None  # the key directory; the sum of the masked inputs
        self._shared = self._survivors = frozenset()  # U2: shared their keys; U3: sent masked inputs

    def _need(self, count: int, what: str) -> None:
        if count < self.config.threshold:
            raise ValueError(f"too many drop-outs: {count} {what}, need t = {self.config.threshold}")

    @staticmethod
    def _senders(messages, allowed=None) -> list[int]:
        ids = [m.sender for m in messages]
        if len(set(ids)) != len(ids) or (allowed is not None and not set(ids) <= allowed):
            raise ValueError("duplicate message, or a message from a client outside this stage of the round")
        return ids

    def collect_keys(self, messages: Sequence[AdvertiseKeys]) -> KeyDirectory:
        ids = self._senders(messages)
        graph = masking_graph(ids, self.config, seed=self._graph_seed)
        self._dir = KeyDirectory({m.sender: (m.cipher_public, m.mask_public) for m in messages}, graph)
        return self._dir

    def route_shares(self, messages: Sequence[SharedKeys]) -> dict[int, ForwardedShares]:
        self._shared = frozenset(self._senders(messages, set(self._dir.public_keys)))
        self._need(len(self._shared), "clients shared their keys")
        return {v: ForwardedShares(v, {m.sender: m.ciphertexts[v] for m in messages if v in m.ciphertexts})
                for v in self._shared}

    def collect_masked(self, messages: Sequence[MaskedInput]) -> Survivors:
        """The survivors U3; a ValueError (nothing unmasked) if too few or disconnected (:func:`check_survivors`)."""
        self._survivors = frozenset(self._senders(messages, set(self._shared)))
        check_survivors(self._dir.neighbours, self._survivors, threshold=self.config.threshold)
        word = word_type(self.config.bits)  # summed in the masks' words: their range is a multiple of 2^bits
        self._total = np.zeros(self.config.dim, word)
        for m in messages:
            self._total += np.asarray(m.vector).astype(word, copy=False)
        return Survivors(self._survivors)

    def unmask(self, messages: Sequence[UnmaskingShares]) -> tuple[np.ndarray, SecAggDiagnostics]:
        """The exact sum mod 2^bits of the survivors' inputs, or a ValueError -- never a wrong sum.

        Each secret is interpolated from the t shares of the lowest holder ids: any t determine it, and a share
        left unused cannot change it. A share garbled at random among those used moves the value uniformly over
        the field, which is refused (at or above 2^256: all but 2^-265 of it) or fails the key check; a share
        altered on purpose so that the secret moves by a small amount may not be caught (as with every share
        used): clients are trusted to send their shares."""
        cfg, d = self.config, self._dir
        responders = self._senders(messages, set(self._survivors))
        total = self._total.copy()
        held = {"self_mask_shares": {}, "key_shares": {}}  # kind -> owner u -> {holder: share of u's secret}
        for m in messages:
            for kind, owners in held.items():
                for u, share in getattr(m, kind).items():
                    owners.setdefault(u, {})[m.sender] = share
        for u in sorted(self._shared):
            kind = "self_mask_shares" if u in self._survivors else "key_shares"
            shares = held[kind].get(u, {})
            self._need(len(shares), f"shares of client {u}'s {'self mask' if kind[0] == 's' else 'mask key'}")
            used = dict(sorted(shares.items())[:cfg.threshold])  # t shares determine the secret: O(t^2), not O(k^2)
            if (secret := shamir_reconstruct(used)) >= 1 << 256:
                raise ValueError(f"shares of client {u} are inconsistent: reconstruction failed")
            seed = secret.to_bytes(32, "big")
            if u in self._survivors:
                total -= prg_words(seed, dim=cfg.dim, bits=cfg.bits)
                continue
            key = X25519PrivateKey.from_private_bytes(seed)
            if key.public_key().public_bytes(**_RAW) != d.public_keys[u][1]:
                raise ValueError(f"reconstructed mask key of client {u} does not match its public key")
            for v in d.neighbours[u] & self._survivors:  # v added +mask if v < u, -mask if v > u
                mask = _mask(key, d.public_keys[v][1], cfg)
                total = total - mask if v < u else total + mask
        diag = SecAggDiagnostics(len(self._survivors), len(self._shared - self._survivors),
                                 len(d.public_keys) - len(self._shared), len(responders))
        return (total & word_type(cfg.bits)((1 << cfg.bits) - 1)).astype(np.uint64), diag
