"""Checking a request's signature as the exchange does, over the raw query bytes."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from typing import Any, Protocol
from urllib.parse import unquote_to_bytes

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding


class Verifiable(Protocol):
    """What checking a signature needs to know of an account."""

    key_type: str
    secret: str | None
    public_key: Any


def signature_valid(account: Verifiable, payload: bytes, signature: bytes) -> bool:
    """Whether ``signature`` (as sent, percent-encoded for base64) signs ``payload``."""
    if not signature or b"&" in signature:
        return False
    if account.key_type == "HMAC":
        assert account.secret is not None
        expected = hmac.new(account.secret.encode(), payload, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected.encode(), signature.lower())
    try:
        raw = base64.b64decode(unquote_to_bytes(signature), validate=True)
    except (binascii.Error, ValueError):
        return False
    try:
        if account.key_type == "ED25519":
            account.public_key.verify(raw, payload)
        else:
            account.public_key.verify(raw, payload, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True
