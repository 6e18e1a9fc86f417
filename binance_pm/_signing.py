"""Request signing for the three key types the exchange accepts.

The signed payload is exactly the query string that is sent, without ``&signature=``. HMAC keys
sign to lowercase hex; Ed25519 and RSA keys sign to base64, which is then percent-encoded so the
signature can stand as the last query parameter as it is.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Protocol
from urllib.parse import quote

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

RSA_KEY_SIZES = (2048, 4096)


class Signer(Protocol):
    """Signs a query string; holds the secret so nothing else has to."""

    @property
    def key_type(self) -> str:
        """``"HMAC"``, ``"ED25519"`` or ``"RSA"``."""
        ...

    def sign(self, payload: bytes) -> str:
        """The signature of ``payload``, ready to append as ``&signature=…``."""
        ...


class HmacSigner:
    """HMAC-SHA256 with the API secret, as lowercase hex."""

    __slots__ = ("_mac",)
    key_type = "HMAC"

    def __init__(self, secret: str | bytes) -> None:
        if not isinstance(secret, (str, bytes, bytearray)):
            raise TypeError(f"the API secret must be str or bytes, not {type(secret).__name__}")
        key = secret.encode() if isinstance(secret, str) else bytes(secret)
        if not key:
            raise ValueError("the API secret is empty")
        # Keying is done once; each signature copies the keyed state.
        self._mac = hmac.new(key, digestmod=hashlib.sha256)

    def sign(self, payload: bytes) -> str:
        mac = self._mac.copy()
        mac.update(payload)
        return mac.hexdigest()

    def __repr__(self) -> str:
        return "HmacSigner(<secret hidden>)"


class Ed25519Signer:
    """Ed25519 over the payload, base64 then percent-encoded."""

    __slots__ = ("_key",)
    key_type = "ED25519"

    def __init__(self, key: ed25519.Ed25519PrivateKey) -> None:
        self._key = key

    def sign(self, payload: bytes) -> str:
        return quote(base64.b64encode(self._key.sign(payload)), safe="")

    def __repr__(self) -> str:
        return "Ed25519Signer(<private key hidden>)"


class RsaSigner:
    """RSASSA-PKCS1-v1_5 with SHA-256, base64 then percent-encoded."""

    __slots__ = ("_key",)
    key_type = "RSA"

    def __init__(self, key: rsa.RSAPrivateKey) -> None:
        if key.key_size not in RSA_KEY_SIZES:
            raise ValueError(
                f"the exchange accepts RSA keys of 2048 or 4096 bits, this one has {key.key_size}"
            )
        self._key = key

    def sign(self, payload: bytes) -> str:
        signature = self._key.sign(payload, padding.PKCS1v15(), hashes.SHA256())
        return quote(base64.b64encode(signature), safe="")

    def __repr__(self) -> str:
        return "RsaSigner(<private key hidden>)"


def load_signer(
    *,
    secret: str | bytes | None = None,
    private_key: str | bytes | None = None,
    private_key_password: str | bytes | None = None,
) -> HmacSigner | Ed25519Signer | RsaSigner:
    """Build the signer for an account from exactly one of ``secret`` and ``private_key``.

    ``private_key`` is a PEM (PKCS#8) private key; whether it is Ed25519 or RSA is read from the
    loaded key itself, never guessed from the length of its text.
    """
    if (secret is None) == (private_key is None):
        raise ValueError("give exactly one of secret= (HMAC) and private_key= (Ed25519 or RSA PEM)")
    if secret is not None:
        if private_key_password is not None:
            raise ValueError("private_key_password= goes with private_key=, not with secret=")
        return HmacSigner(secret)
    assert private_key is not None
    pem = private_key.encode() if isinstance(private_key, str) else bytes(private_key)
    password = (
        private_key_password.encode()
        if isinstance(private_key_password, str)
        else private_key_password
    )
    try:
        # Without OpenSSL's consistency check of an RSA key's parts: it costs 30-40 ms for a
        # 2048-bit key and about 260 ms for a 4096-bit one, on the event loop for every client
        # made. It is not needed for safety: OpenSSL checks each RSA signature against the
        # public key before it returns it (and recomputes it without CRT if it does not hold),
        # so a key whose parts disagree cannot leak its factors, and at worst signs requests
        # the exchange refuses (-1022, an AuthError).
        key = serialization.load_pem_private_key(
            pem, password=password, unsafe_skip_rsa_key_validation=True
        )
    except TypeError as exc:
        # cryptography says TypeError for a missing or unexpected password.
        raise ValueError(f"the private key could not be loaded: {_first_line(exc)}") from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ValueError(
            f"the private key could not be loaded (not a PEM private key, or a wrong password): "
            f"{_first_line(exc)}"
        ) from None
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return Ed25519Signer(key)
    if isinstance(key, rsa.RSAPrivateKey):
        return RsaSigner(key)
    raise ValueError(
        f"the exchange signs with Ed25519 or RSA keys; this is a {type(key).__name__.lstrip('_')}"
    )


def _first_line(exc: Exception) -> str:
    # cryptography's messages never quote key material, but keep them to one short line.
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
