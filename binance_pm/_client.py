"""AsyncClient: the five Portfolio Margin account endpoints of one account."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import TypeAlias, TypeVar, overload

import httpx

from ._config import MAX_RETRIES, RECV_WINDOW, TIMEOUT
from ._credentials import Credentials
from ._endpoints import (
    ACCOUNT_ENDPOINTS,
    CLASSIC_PM_ACCOUNT,
    LISTEN_KEY,
    PM_ACCOUNT,
    PM_BALANCE,
    PM_PRO_ACCOUNT,
    PM_PRO_BALANCE,
    PM_PRO_SPAN_ACCOUNT,
    PRODUCT_NAME,
    Endpoint,
    ListenKey,
    account_type,
)
from ._engine import Engine
from ._exceptions import AuthError, BadRequestError
from ._hook import RateLimitHook
from ._http import DEFAULT_MAX_BODY, Sender
from ._models import (
    AccountType,
    ClassicPMAccount,
    PMAccount,
    PMBalance,
    PMProAccount,
    PMProBalance,
    PMProSpanAccount,
)

ClientT = TypeVar("ClientT", bound="AsyncClient")
T = TypeVar("T")

AccountResult: TypeAlias = (
    list[PMBalance]
    | PMBalance
    | PMAccount
    | list[PMProBalance]
    | PMProAccount
    | PMProSpanAccount
    | ClassicPMAccount
)
"""What an account endpoint answers, decoded: one of the account methods' return types (what
:meth:`AsyncClient.call` returns, and a poll's :attr:`Update.result`)."""


async def _shaped(call: Awaitable[T], shape: Callable[[T, str | None], T], asset: str | None) -> T:
    return shape(await call, asset)


def _check_name(name: object) -> str | None:
    if name is None:
        return None
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, not {type(name).__name__}")
    if not name.strip() or not name.isprintable():
        raise ValueError(f"name must be printable and not blank: {name!r}")
    return name


class AsyncClient:
    """The Portfolio Margin account endpoints of one account.

    Standing alone it owns a private Session::

        async with AsyncClient(api_key, secret=secret) as client:
            balances = await client.pm_balance()

    From :meth:`Session.client` it shares that Session's connections, budget and clock, and
    closing it leaves the Session open.

    Exactly one of ``secret`` (HMAC) and ``private_key`` (an Ed25519 or RSA PKCS#8 PEM, with
    ``private_key_password`` if encrypted) must be given, else ``ValueError``. The other
    keywords are :class:`Session`'s. ``name`` (``"desk-1"``) names the account in its ``repr``,
    in poll updates and in the command line's output; by default the masked API key does.
    ``product`` (``"PM"``, ``"PM Pro"``, ``"PM Pro SPAN"`` or an :class:`AccountType`) is the
    account's product when you know it (:attr:`product`; else :meth:`detect_product`).

    Every endpoint method also takes ``recv_window=`` (ms) and ``timeout=`` (the seconds that
    call may take, waiting for budget and retries included, instead of the Session's
    ``timeout``).
    """

    __slots__ = ("_credentials", "_name", "_owns_session", "_product", "_session")

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
        sender: Sender | None = None,
        recv_window: int = RECV_WINDOW,
        timeout: float = TIMEOUT,
        max_retries: int = MAX_RETRIES,
        proxy: str | None = None,
        max_body: int = DEFAULT_MAX_BODY,
        source_address: str | None = None,
        name: str | None = None,
        product: AccountType | str | None = None,
    ) -> None:
        self._name = _check_name(name)
        self._product = None if product is None else account_type(product)
        self._credentials = Credentials(
            api_key,
            secret=secret,
            private_key=private_key,
            private_key_password=private_key_password,
        )
        self._session = Engine(
            base_url=base_url,
            hosts=hosts,
            governor=governor,
            http=http,
            sender=sender,
            recv_window=recv_window,
            timeout=timeout,
            max_retries=max_retries,
            proxy=proxy,
            max_body=max_body,
            source_address=source_address,
        )
        self._owns_session = True

    @classmethod
    def _bound(
        cls,
        session: Engine[RateLimitHook],
        credentials: Credentials,
        name: str | None = None,
        product: AccountType | str | None = None,
    ) -> AsyncClient:
        client = cls.__new__(cls)
        client._name = _check_name(name)
        client._product = None if product is None else account_type(product)
        client._credentials = credentials
        client._session = session
        client._owns_session = False
        return client

    @property
    def session(self) -> Engine[RateLimitHook]:
        """What this client sends through: its :class:`Session`, or a standalone client's own."""
        return self._session

    @property
    def name(self) -> str:
        """The account's name: the one given (``name="desk-1"``), else its masked API key."""
        return self._name if self._name is not None else self._credentials.masked_key

    @property
    def product(self) -> AccountType | None:
        """The account's product, when known: given (``product="PM"``) or found by
        :meth:`detect_product`. ``Session.poll`` without endpoints polls each account's
        state endpoint by it, and ``Session.stream`` follows each account's own stream."""
        return self._product

    async def detect_product(self, *, timeout: float | None = None) -> AccountType:
        """Find the account's product, keep it as :attr:`product`, and return it:
        ``AccountType.PM_1`` (PM Pro), ``PM_2`` (Portfolio Margin) or ``PM_3`` (PM Pro SPAN).

        Asks ``pm_pro_account()`` first (weight 5 on the account's own UID budget), which
        answers PM Pro and PM Pro SPAN accounts with their type; when the exchange refuses
        the key there (an :class:`AuthError` or a :class:`BadRequestError`), asks
        ``pm_account()`` (weight 20 on the papi IP budget), which answers Portfolio Margin
        accounts. The second refusal is raised (an :class:`AuthError` for a key no product
        takes), with the first as its cause; any other failure (the network, a 5xx, a 429 or
        418, the clock) is raised as it is, and nothing is kept. ``timeout`` bounds each of
        the two calls."""
        try:
            pro = await self.pm_pro_account(timeout=timeout)
        except (AuthError, BadRequestError) as refused:
            try:
                await self.pm_account(timeout=timeout)
            except (AuthError, BadRequestError) as also:
                raise also from refused
            self._product = AccountType.PM_2
        else:
            # It answers for the types its page names (PM_1, PM_3; PM_2 if it ever does); one
            # this package does not know is taken for PM Pro, whose endpoint answered.
            known = pro.account_type.value in PRODUCT_NAME
            self._product = pro.account_type if known else AccountType.PM_1
        return self._product

    @property
    def api_key(self) -> str:
        """The API key, as sent in every signed request's header (the secret never leaves the
        signer). The rate-limit governor counts an account's UID budget by it."""
        return self._credentials.api_key

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

    def _get(
        self,
        endpoint: Endpoint[T],
        asset: str | None = None,
        *,
        recv_window: int | None = None,
        timeout: float | None = None,
        on_grant: Callable[[], None] | None = None,
    ) -> Awaitable[T]:
        """One call of ``endpoint`` for this account (what every method here and a poll do):
        the Session's call itself when the answer needs no shaping, so no frame is added."""
        call = self._session._call(
            endpoint,
            endpoint.query(asset),
            credentials=self._credentials,
            recv_window=recv_window,
            timeout=timeout,
            on_grant=on_grant,
        )
        if endpoint.shape is None:
            return call
        return _shaped(call, endpoint.shape, asset)

    def call(
        self,
        endpoint: str,
        *,
        asset: str | None = None,
        recv_window: int | None = None,
        timeout: float | None = None,
        on_grant: Callable[[], None] | None = None,
    ) -> Awaitable[AccountResult]:
        """One call of an account endpoint named as its method is (``"pm_pro_account"``), as
        :meth:`Session.poll` makes them; ``asset`` where that endpoint takes one.

        ``on_grant`` is called when the rate-limit governor lets the request out (a poll's gate
        then lets the next call of that budget queue); if it raises, the request does not
        leave, its weight goes back, and the call raises that. Raises ``ValueError`` at once
        for an unknown name or a missing or unwanted ``asset``.
        """
        spec = ACCOUNT_ENDPOINTS.get(endpoint)
        if spec is None:
            known = ", ".join(ACCOUNT_ENDPOINTS)
            raise ValueError(f"unknown endpoint {endpoint!r}; known: {known}")
        return self._get(spec, asset, recv_window=recv_window, timeout=timeout, on_grant=on_grant)

    async def listen_key(
        self,
        product: str = "pm_pro",
        action: str = "open",
        *,
        timeout: float | None = None,
    ) -> str | None:
        """The account's user data stream key: ``action`` ``"open"`` (creates it, or returns
        the one that lives, extending its life; the key), ``"keepalive"`` or ``"close"``
        (``None``); for ``product`` ``"pm"`` (``/papi/v1/listenKey``) or ``"pm_pro"``
        (``/fapi/v1/listenKey``, PM Pro and PM Pro SPAN). Weight 1, through the governor.

        The key is a credential for the account's stream: keep it out of logs.
        :meth:`Session.stream` owns its whole life for you."""
        actions = LISTEN_KEY.get(product)
        if actions is None:
            raise ValueError(
                f"product must be {' or '.join(map(repr, LISTEN_KEY))}, not {product!r}"
            )
        endpoint = actions.get(action)
        if endpoint is None:
            raise ValueError(f"action must be 'open', 'keepalive' or 'close', not {action!r}")
        answer = await self._get(endpoint, timeout=timeout)
        return answer.listen_key if isinstance(answer, ListenKey) else None

    @overload
    async def pm_balance(
        self,
        *,
        asset: None = None,
        recv_window: int | None = None,
        timeout: float | None = None,
    ) -> list[PMBalance]: ...

    @overload
    async def pm_balance(
        self,
        *,
        asset: str,
        recv_window: int | None = None,
        timeout: float | None = None,
    ) -> PMBalance: ...

    async def pm_balance(
        self,
        *,
        asset: str | None = None,
        recv_window: int | None = None,
        timeout: float | None = None,
    ) -> list[PMBalance] | PMBalance:
        """Portfolio Margin balances, ``GET /papi/v1/balance`` (weight 20, papi IP budget).

        Without ``asset``, a list of every asset; with it, that asset's :class:`PMBalance`.
        """
        return await self._get(PM_BALANCE, asset, recv_window=recv_window, timeout=timeout)

    async def pm_account(
        self,
        *,
        recv_window: int | None = None,
        timeout: float | None = None,
    ) -> PMAccount:
        """Portfolio Margin account state, uniMMR first, ``GET /papi/v1/account`` (weight 20,
        papi IP budget)."""
        return await self._get(PM_ACCOUNT, recv_window=recv_window, timeout=timeout)

    async def pm_pro_balance(
        self,
        *,
        asset: str | None = None,
        recv_window: int | None = None,
        timeout: float | None = None,
    ) -> list[PMProBalance]:
        """PM Pro balances, ``GET /sapi/v1/portfolio/balance`` (weight 20, sapi IP budget).

        Always a list; with ``asset``, the list holds that asset only.
        """
        return await self._get(PM_PRO_BALANCE, asset, recv_window=recv_window, timeout=timeout)

    async def pm_pro_account(
        self,
        *,
        recv_window: int | None = None,
        timeout: float | None = None,
    ) -> PMProAccount:
        """PM Pro account state, ``GET /sapi/v1/portfolio/account`` (weight 5, sapi UID budget)."""
        return await self._get(PM_PRO_ACCOUNT, recv_window=recv_window, timeout=timeout)

    async def pm_pro_span_account(
        self,
        *,
        recv_window: int | None = None,
        timeout: float | None = None,
    ) -> PMProSpanAccount:
        """PM Pro SPAN account state, ``GET /sapi/v2/portfolio/account`` (weight 5, sapi IP).

        For PM Pro SPAN accounts only; others get an :class:`~binance_pm.APIError`.
        """
        return await self._get(PM_PRO_SPAN_ACCOUNT, recv_window=recv_window, timeout=timeout)

    async def classic_pm_account(
        self,
        *,
        asset: str,
        recv_window: int | None = None,
        timeout: float | None = None,
    ) -> ClassicPMAccount:
        """What a Classic PM account can move out of ``asset``, ``GET /fapi/v1/pmAccountInfo``
        (weight 5, fapi IP budget). ``asset`` is mandatory."""
        return await self._get(CLASSIC_PM_ACCOUNT, asset, recv_window=recv_window, timeout=timeout)

    def __repr__(self) -> str:
        parts = [self.masked_key, self.key_type]
        if self._name is not None:
            parts.insert(0, repr(self._name))
        if self._product is not None:
            parts.append(PRODUCT_NAME[self._product.value])
        return f"AsyncClient({', '.join(parts)})"
