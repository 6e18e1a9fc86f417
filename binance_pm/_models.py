"""Typed, exact results: frozen msgspec Structs with snake_case attributes and Decimal amounts.

Every amount is ``Decimal | None``: the exchange sends amounts as strings and sometimes sends ``""``
where a number should stand, which decodes to ``None``. Fields the exchange adds later are
ignored. ``update_time`` is the exchange's integer milliseconds since the epoch.
"""

from __future__ import annotations

import enum
from decimal import Decimal

import msgspec

__all__ = [
    "AccountStatus",
    "AccountType",
    "ClassicPMAccount",
    "PMBalance",
    "PMProAccount",
    "PMProBalance",
    "PMProSpanAccount",
    "RiskUnitMM",
]


class _OpenEnum(str, enum.Enum):
    """A str enum that keeps values it does not know instead of failing.

    ``AccountStatus("NEW_STATE")`` is a pseudo-member whose ``value`` and ``name`` are
    ``"NEW_STATE"``; it compares equal to that string, so code keeps working when the exchange
    adds a value before this package knows of it.
    """

    @classmethod
    def _missing_(cls, value: object) -> _OpenEnum | None:
        if not isinstance(value, str):
            return None
        member = str.__new__(cls, value)
        member._name_ = value
        member._value_ = value
        return member

    def __str__(self) -> str:
        return str(self.value)


class AccountStatus(_OpenEnum):
    """A Portfolio Margin account's risk state, from healthy to bankrupt."""

    NORMAL = "NORMAL"
    MARGIN_CALL = "MARGIN_CALL"
    SUPPLY_MARGIN = "SUPPLY_MARGIN"
    REDUCE_ONLY = "REDUCE_ONLY"
    ACTIVE_LIQUIDATION = "ACTIVE_LIQUIDATION"
    FORCE_LIQUIDATION = "FORCE_LIQUIDATION"
    BANKRUPTED = "BANKRUPTED"


class AccountType(_OpenEnum):
    """The account's product. The exchange's pages disagree on the labels; these are the
    ``/sapi/v1/portfolio/account`` page's: PM_1 is PM Pro, PM_2 is PM, PM_3 is PM Pro SPAN."""

    PM_1 = "PM_1"
    PM_2 = "PM_2"
    PM_3 = "PM_3"


class _Model(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """Base of every result: frozen, keyword-built, camelCase on the wire."""


class PMBalance(_Model, frozen=True, kw_only=True):
    """One asset of a Portfolio Margin account (``GET /papi/v1/balance``).

    ``cross_margin_asset`` is ``None`` in the single-asset answer, which does not carry it.
    """

    asset: str
    total_wallet_balance: Decimal | None
    cross_margin_asset: Decimal | None = None
    cross_margin_borrowed: Decimal | None
    cross_margin_free: Decimal | None
    cross_margin_interest: Decimal | None
    cross_margin_locked: Decimal | None
    um_wallet_balance: Decimal | None
    um_unrealized_pnl: Decimal | None = msgspec.field(name="umUnrealizedPNL")
    cm_wallet_balance: Decimal | None
    cm_unrealized_pnl: Decimal | None = msgspec.field(name="cmUnrealizedPNL")
    update_time: int
    negative_balance: Decimal | None = None


class PMProBalance(PMBalance, frozen=True, kw_only=True):
    """One asset of a PM Pro account (``GET /sapi/v1/portfolio/balance``).

    The option fields are filled for PM Pro SPAN accounts only.
    """

    option_wallet_balance: Decimal | None = None
    option_equity: Decimal | None = None


class PMAccount(_Model, frozen=True, kw_only=True):
    """A Portfolio Margin account's margin state (``GET /papi/v1/account``).

    ``uni_mmr`` is the maintenance margin ratio; equities, margins and amounts are in USD.
    ``actual_equity`` is the equity without collateral rates; ``virtual_max_withdraw_amount``
    the most that can be transferred out. The exchange may send ``total_available_balance``
    and ``total_margin_open_loss`` empty: ``None``.
    """

    uni_mmr: Decimal | None = msgspec.field(name="uniMMR")
    account_equity: Decimal | None
    actual_equity: Decimal | None
    account_initial_margin: Decimal | None = None
    account_maint_margin: Decimal | None
    account_status: AccountStatus
    virtual_max_withdraw_amount: Decimal | None = None
    total_available_balance: Decimal | None = None
    total_margin_open_loss: Decimal | None = None
    update_time: int = 0


class _PMProAccountBase(_Model, frozen=True, kw_only=True):
    uni_mmr: Decimal | None = msgspec.field(name="uniMMR")
    account_equity: Decimal | None
    actual_equity: Decimal | None
    account_maint_margin: Decimal | None
    account_status: AccountStatus
    account_type: AccountType


class PMProAccount(_PMProAccountBase, frozen=True, kw_only=True):
    """A PM Pro account's margin state (``GET /sapi/v1/portfolio/account``).

    ``uni_mmr`` is the maintenance margin ratio; equities and margins are in USD. The exchange
    says to ignore ``account_initial_margin`` and ``total_available_balance`` for PM Pro and PM
    Pro SPAN accounts.
    """

    account_initial_margin: Decimal | None = None
    total_available_balance: Decimal | None = None


class RiskUnitMM(_Model, frozen=True, kw_only=True):
    """The maintenance margin of one risk unit of a PM Pro SPAN account, in USD."""

    asset: str
    uni_maintain_usd: Decimal | None


class PMProSpanAccount(_PMProAccountBase, frozen=True, kw_only=True):
    """A PM Pro SPAN account's margin state (``GET /sapi/v2/portfolio/account``)."""

    risk_unit_mm_list: tuple[RiskUnitMM, ...] = msgspec.field(name="riskUnitMMList", default=())
    margin_mm: Decimal | None = msgspec.field(name="marginMM", default=None)
    other_mm: Decimal | None = msgspec.field(name="otherMM", default=None)


class ClassicPMAccount(_Model, frozen=True, kw_only=True):
    """How much of one asset a Classic PM account can move out (``GET /fapi/v1/pmAccountInfo``).

    ``max_withdraw_amount`` is in the asset, ``max_withdraw_amount_usd`` the same in USD.
    """

    asset: str
    max_withdraw_amount_usd: Decimal | None = msgspec.field(name="maxWithdrawAmountUSD")
    max_withdraw_amount: Decimal | None
