"""Signing: the documented HMAC vectors, Ed25519 and RSA verified with the public key."""

from __future__ import annotations

import base64
from urllib.parse import unquote

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from binance_pm import Session
from binance_pm._signing import Ed25519Signer, HmacSigner, RsaSigner, load_signer

from .conftest import Stack

PAYLOAD = b"symbol=BTCUSDT&side=BUY&type=LIMIT&quantity=1&recvWindow=5000&timestamp=1591702613943"


@pytest.mark.parametrize(
    ("secret", "payload", "signature"),
    [
        (
            "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j",
            "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1"
            "&recvWindow=5000&timestamp=1499827319559",
            "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71",
        ),
        (
            "2b5eb11e18796d12d88f13dc27dbbd02c2cc51ff7059765ed9821957d82bb4d9",
            "symbol=BTCUSDT&side=BUY&type=LIMIT&quantity=1&price=9000&timeInForce=GTC"
            "&recvWindow=5000&timestamp=1591702613943",
            "3c661234138461fcc7a7d8746c6558c9842d4e10870d2ecbedf7777cad694af9",
        ),
    ],
)
def test_hmac_reproduces_the_documented_vectors(secret: str, payload: str, signature: str) -> None:
    assert HmacSigner(secret).sign(payload.encode()) == signature


def test_hmac_signer_is_reusable_across_payloads() -> None:
    signer = HmacSigner("k")
    first = signer.sign(b"a=1")
    signer.sign(b"b=2")
    assert signer.sign(b"a=1") == first


def pem(
    key: ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
    password: bytes | None = None,
) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def test_ed25519_signature_verifies_with_the_public_key(
    ed25519_key: ed25519.Ed25519PrivateKey,
) -> None:
    signer = load_signer(private_key=pem(ed25519_key))

    signature = signer.sign(PAYLOAD)

    assert isinstance(signer, Ed25519Signer)
    ed25519_key.public_key().verify(base64.b64decode(unquote(signature)), PAYLOAD)


def test_rsa_signature_is_pkcs1v15_sha256_and_verifies(rsa_key: rsa.RSAPrivateKey) -> None:
    signer = load_signer(private_key=pem(rsa_key).decode())  # str PEM works too

    signature = signer.sign(PAYLOAD)

    assert isinstance(signer, RsaSigner)
    rsa_key.public_key().verify(
        base64.b64decode(unquote(signature)), PAYLOAD, padding.PKCS1v15(), hashes.SHA256()
    )


def test_base64_signature_is_percent_encoded(rsa_key: rsa.RSAPrivateKey) -> None:
    signer = load_signer(private_key=pem(rsa_key))
    signatures = [signer.sign(PAYLOAD + str(i).encode()) for i in range(20)]

    assert all(not set(s) & set("+/=") for s in signatures)
    assert any("%2B" in s or "%2F" in s or "%3D" in s for s in signatures)


def test_encrypted_key_loads_with_its_password(ed25519_key: ed25519.Ed25519PrivateKey) -> None:
    signer = load_signer(private_key=pem(ed25519_key, b"pw"), private_key_password="pw")

    assert signer.key_type == "ED25519"


def test_wrong_password_is_a_value_error(ed25519_key: ed25519.Ed25519PrivateKey) -> None:
    with pytest.raises(ValueError, match="could not be loaded"):
        load_signer(private_key=pem(ed25519_key, b"pw"), private_key_password="wrong")


def test_missing_password_is_a_value_error(ed25519_key: ed25519.Ed25519PrivateKey) -> None:
    with pytest.raises(ValueError, match="could not be loaded"):
        load_signer(private_key=pem(ed25519_key, b"pw"))


def test_key_type_is_read_from_the_key_not_its_length(rsa_key: rsa.RSAPrivateKey) -> None:
    # A PEM padded with comment lines is longer or shorter than either type "usually" is.
    padded = b"comment line\n" * 40 + pem(rsa_key)
    assert load_signer(private_key=padded).key_type == "RSA"


def test_other_key_types_are_refused_clearly() -> None:
    with pytest.raises(ValueError, match="Ed25519 or RSA"):
        load_signer(private_key=pem(ec.generate_private_key(ec.SECP256R1())))


def test_rsa_keys_of_other_sizes_are_refused() -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(ValueError, match="2048 or 4096"):
        load_signer(private_key=pem(small))


def test_text_that_is_not_a_key_is_refused() -> None:
    with pytest.raises(ValueError, match="not a PEM"):
        load_signer(private_key=b"-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n")


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"secret": "s", "private_key": b"k"},
        {"secret": "s", "private_key_password": "p"},
        {"secret": ""},
    ],
)
def test_credential_combinations_that_make_no_sense_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"secret|private_key"):
        load_signer(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["\x00", "\x0b", "\x0c", "\x1b", "\x7f", " ", "é"])
async def test_an_api_key_a_header_cannot_carry_is_refused_at_once(
    bad: str, http_stack: Stack
) -> None:
    async with Session(**http_stack) as s:
        with pytest.raises(ValueError, match="header"):
            s.client(f"abcd{bad}efgh1234", secret="s")


async def test_a_secret_that_is_not_text_or_bytes_is_a_type_error(http_stack: Stack) -> None:
    async with Session(**http_stack) as s:
        with pytest.raises(TypeError, match="secret"):
            s.client("abcdefgh1234", secret=12345)  # type: ignore[arg-type]


def test_an_rsa_key_whose_parts_disagree_never_signs_with_a_faulty_crt(
    rsa_key: rsa.RSAPrivateKey,
) -> None:
    # Keys load without OpenSSL's consistency check (hundreds of ms for RSA-4096). A key with
    # a wrong CRT exponent must still never give out a faulty signature, whose gcd with n
    # would be a factor of n: OpenSSL checks each one with the public key and recomputes it.
    good = rsa_key.private_numbers()
    bad = rsa.RSAPrivateNumbers(
        p=good.p,
        q=good.q,
        d=good.d,
        dmp1=good.dmp1 + 2,  # wrong: the CRT half modulo p is miscalculated
        dmq1=good.dmq1,
        iqmp=good.iqmp,
        public_numbers=good.public_numbers,
    ).private_key(unsafe_skip_rsa_key_validation=True)
    signer = load_signer(private_key=pem(bad))

    signature = base64.b64decode(unquote(signer.sign(PAYLOAD)))

    rsa_key.public_key().verify(signature, PAYLOAD, padding.PKCS1v15(), hashes.SHA256())
