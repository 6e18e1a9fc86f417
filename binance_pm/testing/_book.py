"""The simulated exchange's accounts: keys, products, balances and a margin ratio that drifts.

Accounts are made from a seed, so the same seed gives the same keys (RSA ones too) and the same
starting books. Each account's maintenance margin ratio (uniMMR) then
moves as a random walk on the server's clock; a few accounts drift down until they reach
MARGIN_CALL and beyond. Some accounts carry the odd values the exchange's own examples show: an
empty ``cmUnrealizedPNL`` and a ``totalAvailableBalance`` with thousands separators.
"""

from __future__ import annotations

import math
import random
import string
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from .._models import AccountStatus, AccountType

PRICES = {
    "USDT": 1.0,
    "BTC": 60_000.0,
    "ETH": 3_000.0,
    "BNB": 600.0,
    "SOL": 150.0,
    "XRP": 0.6,
    "DOGE": 0.15,
    "ADA": 0.45,
    "LINK": 15.0,
    "LTC": 80.0,
}
ASSETS = tuple(PRICES)
RSA_KEYS_MAX = 2  # RSA keys are slow to make; RSA accounts share this many per seed
_rsa_keys: dict[tuple[int, int], rsa.RSAPrivateKey] = {}  # (seed, slot): made once per process
# A PM Pro account's status by uniMMR, highest threshold first.
STATUS_BY_MMR = (
    (1.5, AccountStatus.NORMAL),
    (1.2, AccountStatus.MARGIN_CALL),
    (1.1, AccountStatus.SUPPLY_MARGIN),
    (1.05, AccountStatus.REDUCE_ONLY),
    (1.0, AccountStatus.ACTIVE_LIQUIDATION),
    (0.0, AccountStatus.FORCE_LIQUIDATION),
)
PRODUCTS = (AccountType.PM_2, AccountType.PM_1, AccountType.PM_3)


def status_for(uni_mmr: float) -> AccountStatus:
    for threshold, status in STATUS_BY_MMR:
        if uni_mmr >= threshold:
            return status
    return AccountStatus.BANKRUPTED


def amount(value: float, *, grouped: bool = False) -> str:
    return f"{value:,.8f}" if grouped else f"{value:.8f}"


@dataclass(repr=False)
class SimAccount:
    """One account of the simulated exchange, with the keys a client needs to call it.

    ``credentials()`` gives the keyword arguments for ``Session.client`` /
    ``AsyncClient``: ``{"secret": ...}`` or ``{"private_key": ...}``.
    """

    name: str
    api_key: str
    key_type: str
    account_type: AccountType
    secret: str | None = None
    private_key: bytes | None = None
    public_key: Any = field(default=None, compare=False)

    def credentials(self) -> dict[str, Any]:
        if self.secret is not None:
            return {"secret": self.secret}
        return {"private_key": self.private_key}

    def __repr__(self) -> str:
        return (
            f"SimAccount({self.name}, {self.api_key[:4]}…{self.api_key[-4:]}, {self.key_type}, "
            f"{self.account_type.value})"
        )


class Book:
    """One account's money and risk, moving with time."""

    __slots__ = (
        "_log_mmr",
        "_rng",
        "_updated",
        "balances",
        "drift",
        "empty_cm_pnl",
        "grouped",
        "maint_margin",
        "vol",
    )

    def __init__(self, rng: random.Random, now: float, *, sliding: bool) -> None:
        self._rng = rng
        held = rng.sample(ASSETS[1:], rng.randint(0, 9))
        self.balances: dict[str, float] = {"USDT": round(rng.uniform(1e3, 5e5), 8)}
        for asset in held:
            self.balances[asset] = round(rng.uniform(1e3, 2e5) / PRICES[asset], 8)
        equity = sum(q * PRICES[a] for a, q in self.balances.items())
        start = (
            rng.uniform(1.6, 2.2) if sliding else math.exp(rng.uniform(math.log(2), math.log(40)))
        )
        self.maint_margin = equity / start
        self._log_mmr = math.log(start)
        self.drift = -0.02 if sliding else 0.0  # per second, in log uniMMR
        self.vol = 0.01  # per square root of a second
        self._updated = now
        self.empty_cm_pnl = rng.random() < 0.15
        self.grouped = rng.random() < 0.2

    def advance(self, now: float) -> None:
        dt = now - self._updated
        if dt <= 0:
            return
        self._updated = now
        self._log_mmr += self.drift * dt + self.vol * math.sqrt(dt) * self._rng.gauss(0.0, 1.0)
        self._log_mmr = max(self._log_mmr, math.log(0.5))

    def set_uni_mmr(self, uni_mmr: float) -> None:
        self._log_mmr = math.log(uni_mmr)

    @property
    def uni_mmr(self) -> float:
        return math.exp(self._log_mmr)

    @property
    def equity(self) -> float:
        return self.uni_mmr * self.maint_margin

    def _pnl(self) -> float:
        wallet = sum(q * PRICES[a] for a, q in self.balances.items())
        return self.equity - wallet

    def balance(
        self, asset: str, now_ms: int, *, single: bool = False, options: bool = False
    ) -> dict[str, Any]:
        quantity = self.balances[asset]
        share = (
            quantity
            * PRICES[asset]
            / max(sum(q * PRICES[a] for a, q in self.balances.items()), 1e-9)
        )
        pnl = self._pnl() * share / PRICES[asset]
        free, locked = quantity * 0.9, quantity * 0.1
        row: dict[str, Any] = {
            "asset": asset,
            "totalWalletBalance": amount(quantity),
            "crossMarginAsset": amount(free + locked),
            "crossMarginBorrowed": amount(0.0),
            "crossMarginFree": amount(free),
            "crossMarginInterest": amount(0.0),
            "crossMarginLocked": amount(locked),
            "umWalletBalance": amount(0.0),
            "umUnrealizedPNL": amount(pnl),
            "cmWalletBalance": amount(0.0),
            "cmUnrealizedPNL": "" if self.empty_cm_pnl else amount(0.0),
            "updateTime": now_ms,
            "negativeBalance": "0",
        }
        if single:
            del row["crossMarginAsset"]
        if options:
            row["optionWalletBalance"] = amount(0.0)
            row["optionEquity"] = amount(0.0)
        return row

    def account(self, account_type: AccountType, *, span: bool) -> dict[str, Any]:
        uni_mmr = self.uni_mmr
        equity = self.equity
        body: dict[str, Any] = {
            "uniMMR": amount(uni_mmr),
            "accountEquity": amount(equity),
            "actualEquity": amount(equity * 1.08),
            "accountMaintMargin": amount(self.maint_margin),
        }
        if span:
            held = [a for a in self.balances if a != "USDT"] or ["BTC"]
            body["riskUnitMMList"] = [
                {"asset": a, "uniMaintainUsd": amount(self.maint_margin / len(held))} for a in held
            ]
            body["marginMM"] = amount(0.0)
            body["otherMM"] = amount(0.0)
        else:
            body["accountInitialMargin"] = amount(self.maint_margin * 2)
            body["totalAvailableBalance"] = amount(
                equity - self.maint_margin * 2, grouped=self.grouped
            )
        body["accountStatus"] = status_for(uni_mmr).value
        body["accountType"] = account_type.value
        return body

    def pm_account(self, now_ms: int) -> dict[str, Any]:
        """``GET /papi/v1/account``: a PM account's state, with the documented example's
        shape (its two totals sent empty, as the example sends them)."""
        uni_mmr = self.uni_mmr
        equity = self.equity
        return {
            "uniMMR": amount(uni_mmr),
            "accountEquity": amount(equity),
            "actualEquity": amount(equity * 1.08),
            "accountInitialMargin": amount(self.maint_margin * 2),
            "accountMaintMargin": amount(self.maint_margin),
            "accountStatus": status_for(uni_mmr).value,
            "virtualMaxWithdrawAmount": amount(max(equity - self.maint_margin * 2, 0.0)),
            "totalAvailableBalance": "",
            "totalMarginOpenLoss": "",
            "updateTime": now_ms,
        }

    def max_withdraw(self, asset: str) -> dict[str, Any]:
        free_usd = max(self.equity - self.maint_margin * 2, 0.0)
        return {
            "maxWithdrawAmountUSD": amount(free_usd),
            "asset": asset,
            "maxWithdrawAmount": amount(free_usd / PRICES.get(asset, 1.0)),
        }


def make_accounts(count: int, seed: int, now: float) -> tuple[list[SimAccount], list[Book]]:
    """``count`` accounts cycling through PM, PM Pro and PM Pro SPAN, mostly HMAC keys with
    Ed25519 and RSA ones among them; about one in ten drifts towards a margin call."""
    rng = random.Random(seed)
    alphabet = string.ascii_letters + string.digits
    accounts: list[SimAccount] = []
    books: list[Book] = []
    for i in range(count):
        api_key = "".join(rng.choices(alphabet, k=64))
        kind = (
            "HMAC",
            "HMAC",
            "HMAC",
            "ED25519",
            "HMAC",
            "HMAC",
            "ED25519",
            "HMAC",
            "HMAC",
            "RSA",
        )[i % 10]
        account = SimAccount(f"acct-{i:04d}", api_key, kind, PRODUCTS[i % 3])
        if kind == "HMAC":
            account.secret = "".join(rng.choices(alphabet, k=64))
        else:
            key: ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey
            if kind == "ED25519":
                key = ed25519.Ed25519PrivateKey.from_private_bytes(rng.randbytes(32))
            else:
                key = rsa_key(seed, len(accounts) // 10 % RSA_KEYS_MAX)
            account.private_key = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            account.public_key = key.public_key()
        accounts.append(account)
        books.append(Book(random.Random(rng.random()), now, sliding=i % 10 == 4))
    return accounts, books


def _odd_primes_below(limit: int) -> list[int]:
    sieve = bytearray(b"\x01") * limit
    for n in range(3, int(limit**0.5) + 1, 2):
        if sieve[n]:
            sieve[n * n :: 2 * n] = bytes(len(range(n * n, limit, 2 * n)))
    return [n for n in range(3, limit, 2) if sieve[n]]


# A candidate divisible by one of these is not tried with Miller-Rabin.
_SMALL_PRIMES = _odd_primes_below(1 << 15)


def rsa_key(seed: int, slot: int) -> rsa.RSAPrivateKey:
    """The 2048-bit RSA key number ``slot`` of ``seed``: the same in every process (about a
    tenth of a second to make, once per process)."""
    key = _rsa_keys.get((seed, slot))
    if key is None:
        rng = random.Random(f"rsa {seed} {slot}")
        e = 65537
        while True:
            p, q = _prime(rng, 1024), _prime(rng, 1024)
            phi = (p - 1) * (q - 1)
            if p != q and math.gcd(e, phi) == 1:
                break
        d = pow(e, -1, phi)
        numbers = rsa.RSAPrivateNumbers(
            p=p,
            q=q,
            d=d,
            dmp1=rsa.rsa_crt_dmp1(d, p),
            dmq1=rsa.rsa_crt_dmq1(d, q),
            iqmp=rsa.rsa_crt_iqmp(p, q),
            public_numbers=rsa.RSAPublicNumbers(e, p * q),
        )
        key = _rsa_keys[(seed, slot)] = numbers.private_key()
    return key


def _prime(rng: random.Random, bits: int) -> int:
    """A random prime of exactly ``bits`` bits (its top two set, so two make a modulus of
    twice that), drawn from ``rng``: odd numbers from a random start, sieved by small primes,
    then Miller-Rabin."""
    span = 8192  # odd numbers sieved at a time
    while True:
        start = rng.getrandbits(bits) | (3 << (bits - 2)) | 1
        sieve = bytearray(b"\x01") * span  # sieve[i]: start + 2 i may be prime
        for p in _SMALL_PRIMES:
            first = (-start * pow(2, -1, p)) % p  # the first i with p | start + 2 i
            sieve[first::p] = bytes(len(range(first, span, p)))
        for i in range(span):
            candidate = start + 2 * i
            if sieve[i] and candidate.bit_length() == bits and _probably_prime(candidate, rng):
                return candidate


def _probably_prime(n: int, rng: random.Random, rounds: int = 5) -> bool:
    """Miller-Rabin; five rounds leave a random 1024-bit composite passing at odds far below
    2**-80 (Damgard, Landrock and Pomerance)."""
    d, s = n - 1, 0
    while d % 2 == 0:
        d, s = d // 2, s + 1
    for _ in range(rounds):
        x = pow(rng.randrange(2, n - 1), d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True
