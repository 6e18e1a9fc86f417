"""An account's credentials: its API key, checked once, and the signer that holds its secret."""

from __future__ import annotations

from multidict import CIMultiDict, CIMultiDictProxy

from ._exceptions import mask_key
from ._signing import load_signer

# Visible ASCII only: an HTTP header value carries nothing else safely, and an API key is
# letters and digits.
_HEADER_SAFE = frozenset(chr(c) for c in range(0x21, 0x7F))


class Credentials:
    """An account's API key and its signer. The secret lives only inside the signer."""

    __slots__ = ("api_key", "headers", "masked_key", "signer")

    def __init__(
        self,
        api_key: str,
        *,
        secret: str | bytes | None = None,
        private_key: str | bytes | None = None,
        private_key_password: str | bytes | None = None,
    ) -> None:
        if not isinstance(api_key, str):
            raise TypeError(f"api_key must be a str, not {type(api_key).__name__}")
        if not api_key:
            raise ValueError("api_key must be a non-empty string")
        if not _HEADER_SAFE.issuperset(api_key):
            raise ValueError(
                "api_key holds characters an HTTP header cannot carry (spaces, control "
                "characters or non-ASCII)"
            )
        for name, value in (
            ("secret", secret),
            ("private_key", private_key),
            ("private_key_password", private_key_password),
        ):
            if value is not None and not isinstance(value, (str, bytes, bytearray)):
                raise TypeError(f"{name} must be str or bytes, not {type(value).__name__}")
        self.api_key = api_key
        self.masked_key = mask_key(api_key)
        # Sent with every signed request; a multidict, as a caller's sender may expect.
        self.headers = CIMultiDictProxy(CIMultiDict({"X-MBX-APIKEY": api_key}))
        self.signer = load_signer(
            secret=secret, private_key=private_key, private_key_password=private_key_password
        )

    def __repr__(self) -> str:
        return f"Credentials({self.masked_key}, {self.signer.key_type})"
