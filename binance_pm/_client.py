"""AsyncClient: the five Portfolio Margin account endpoints of one account."""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, TypeVar, overload

import httpx

from ._endpoints import (
    CLASSIC_PM_ACCOUNT,
    PM_BALANCE,
    PM_PRO_ACCOUNT,
    PM_PRO_BALANCE,
    PM_PRO_SPAN_ACCOUNT,
)
from ._exceptions import DecodeError, mask_key
from ._models import ClassicPMAccount, PMBalance, PMProAccount, PMProBalance, PMProSpanAccount
from ._session import Session
from ._signing import load_signer

if TYPE_CHECKING:
    from ._hook import RateLimitHook

ClientT = TypeVar("ClientT", bound="AsyncClient")


class Credentials:
    """An account's API key and its signer. The secret lives only inside the signer."""

    __slots__ = ("api_key", "masked_key", "signer")

    def __init__(
        self,
        api_key: str,
        *,
        secret: str | bytes | None = None,
        private_key: str | bytes | None = None,
        private_key_password: str | bytes | None = None,
    ) -> None:
        if not isinstance(api_key, str) or not api_key.strip():
            raise ValueError("api_key must be a non-empty string")
        if not api_key.isascii() or any(c in api_key for c in "\r\n\t "):
            raise ValueError("api_key holds characters an HTTP header cannot carry")
        self.api_key = api_key
        self.masked_key = mask_key(api_key)
        self.signer = load_signer(
            secret=secret, private_key=private_key, private_key_password=private_key_password
        )

    def __repr__(self) -> str:
        return f"Credentials({self.masked_key}, {self.signer.key_type})"


def _asset(asset: str) -> str:
    if not isinstance(asset, str) or not asset.strip():
        raise ValueError(f"asset must be a non-empty string such as 'USDT', not {asset!r}")
    return asset.strip().upper()


class AsyncClient:
    """The Portfolio Margin account endpoints of one account.

    Standing alone it owns a private :class:`Session`::

        async with AsyncClient(api_key, secret=secret) as client:
            balances = await client.pm_balance()

    From :meth:`Session.client` it shares that Session's connections, budget and clock, and
    closing it leaves the Session open.

    Exactly one of ``secret`` (HMAC) and ``private_key`` (an Ed25519 or RSA PKCS#8 PEM, with
    ``private_key_password`` if encrypted) must be given, else ``ValueError``. The other
    keywords are :class:`Session`'s.

    Every endpoint method also takes ``recv_window=`` (ms) and ``deadline=`` (the seconds that
    call may take, waiting for budget and retries included, instead of the Session's
    ``timeout``).
    """

    __slots__ = ("_credentials", "_owns_session", "_session")

    def __init__(
        self,
        api_key: str,
        *,
        secret: str | bytes | None = None,
        private_key: str | bytes | None = None,
        private_key_password: str | bytes | None = None,
        base_url: str | None = None,
        hosts: Mapping[str, str] | None = None,
        governor: RateLimitHook | None = None,
        http: httpx.AsyncClient | None = None,
        recv_window: int = 5000,
        timeout: float = 10.0,
        max_retries: int = 2,
    ) -> None:
        self._credentials = Credentials(
            api_key,
            secret=secret,
            private_key=private_key,
            private_key_password=private_key_password,
        )
        self._session = Session(
            base_url=base_url,
            hosts=hosts,
            governor=governor,
            http=http,
            recv_window=recv_window,
            timeout=timeout,
            max_retries=max_retries,
        )
        self._owns_session = True

    @classmethod
    def _bound(cls, session: Session, credentials: Credentials) -> AsyncClient:
        client = cls.__new__(cls)
        client._credentials = credentials
        client._session = session
        client._owns_session = False
        return client

    @property
    def session(self) -> Session:
        """The Session this client sends through."""
        return self._session

    @property
    def masked_key(self) -> str:
        """The API key, masked: enough to tell accounts apart in logs and tables."""
        return self._credentials.masked_key

    @property
    def key_type(self) -> str:
        """``"HMAC"``, ``"ED25519"`` or ``"RSA"``."""
        return self._credentials.signer.key_type

    async def __aenter__(self: ClientT) -> ClientT:
        self._session._check_open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the private Session, if this client owns one; a shared Session stays open."""
        if self._owns_session:
            await self._session.aclose()

    # -- endpoints ---------------------------------------------------------------------------

    @overload
    async def pm_balance(
        self, *, asset: None = None, recv_window: int | None = None, deadline: float | None = None
    ) -> list[PMBalance]: ...

    @overload
    async def pm_balance(
        self, *, asset: str, recv_window: int | None = None, deadline: float | None = None
    ) -> PMBalance: ...

    async def pm_balance(
        self,
        *,
        asset: str | None = None,
        recv_window: int | None = None,
        deadline: float | None = None,
    ) -> list[PMBalance] | PMBalance:
        """Portfolio Margin balances, ``GET /papi/v1/balance`` (weight 20, papi IP budget).

        Without ``asset``, a list of every asset; with it, that asset's :class:`PMBalance`.
        """
        params = [] if asset is None else [("asset", _asset(asset))]
        result: list[PMBalance] | PMBalance = await self._session.call(
            PM_BALANCE,
            params,
            credentials=self._credentials,
            recv_window=recv_window,
            deadline=deadline,
        )
        if asset is None:
            return result if isinstance(result, list) else [result]
        if isinstance(result, PMBalance):
            return result
        # Asked for one asset but given a list: take that asset if it is there exactly once.
        wanted = params[0][1]
        matches = [b for b in result if b.asset.upper() == wanted]
        if len(matches) != 1:
            raise DecodeError(
                f"asked for {wanted} but the answer is a list with {len(matches)} such assets",
                endpoint=PM_BALANCE.label,
                path="$",
            )
        return matches[0]

    async def pm_pro_balance(
        self,
        *,
        asset: str | None = None,
        recv_window: int | None = None,
        deadline: float | None = None,
    ) -> list[PMProBalance]:
        """PM Pro balances, ``GET /sapi/v1/portfolio/balance`` (weight 20, sapi IP budget).

        Always a list; with ``asset``, the list holds that asset only.
        """
        params = [] if asset is None else [("asset", _asset(asset))]
        result: list[PMProBalance] = await self._session.call(
            PM_PRO_BALANCE,
            params,
            credentials=self._credentials,
            recv_window=recv_window,
            deadline=deadline,
        )
        return result

    async def pm_pro_account(
        self, *, recv_window: int | None = None, deadline: float | None = None
    ) -> PMProAccount:
        """PM Pro account state, ``GET /sapi/v1/portfolio/account`` (weight 5, sapi UID budget)."""
        result: PMProAccount = await self._session.call(
            PM_PRO_ACCOUNT,
            [],
            credentials=self._credentials,
            recv_window=recv_window,
            deadline=deadline,
        )
        return result

    async def pm_pro_span_account(
        self, *, recv_window: int | None = None, deadline: float | None = None
    ) -> PMProSpanAccount:
        """PM Pro SPAN account state, ``GET /sapi/v2/portfolio/account`` (weight 5, sapi IP).

        For PM Pro SPAN accounts only; others get an :class:`~binance_pm.APIError`.
        """
        result: PMProSpanAccount = await self._session.call(
            PM_PRO_SPAN_ACCOUNT,
            [],
            credentials=self._credentials,
            recv_window=recv_window,
            deadline=deadline,
        )
        return result

    async def classic_pm_account(
        self, *, asset: str, recv_window: int | None = None, deadline: float | None = None
    ) -> ClassicPMAccount:
        """What a Classic PM account can move out of ``asset``, ``GET /fapi/v1/pmAccountInfo``
        (weight 5, fapi IP budget). ``asset`` is mandatory."""
        result: ClassicPMAccount = await self._session.call(
            CLASSIC_PM_ACCOUNT,
            [("asset", _asset(asset))],
            credentials=self._credentials,
            recv_window=recv_window,
            deadline=deadline,
        )
        return result

    def __repr__(self) -> str:
        return f"AsyncClient({self.masked_key}, {self.key_type})"
