"""Sensitive personal information: ID numbers (身份证号) and phone numbers.

They are stored encrypted (Fernet) with a keyed hash (HMAC-SHA256) for lookup,
and shown only masked. Both keys derive from ``HUIMIN_SECRET_KEY`` (HKDF), which
never lives in the repository. ID numbers are checked with the GB 11643-1999
check digit.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_ID = re.compile(r"^\d{17}[\dX]$")
_PHONE = re.compile(r"^1[3-9]\d{9}$")
_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"
# Finds ID numbers and mobile numbers inside free text (for masking logs and replies).
_ID_IN_TEXT = re.compile(r"(?<![0-9A-Za-z])\d{17}[\dXx](?![0-9A-Za-z])")
_PHONE_IN_TEXT = re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)")


class PersonalDataError(ValueError):
    """An ID number or phone number that is not valid."""


def normalise_id(raw: str) -> str:
    """Upper-case X, no spaces; raises PersonalDataError when the check digit is wrong."""
    value = re.sub(r"\s+", "", raw).upper()
    if not _ID.match(value):
        raise PersonalDataError("身份证号应为18位，最后一位可以是X")
    if id_check_digit(value[:17]) != value[17]:
        raise PersonalDataError("身份证号校验位不对，请核对")
    return value


def id_check_digit(first17: str) -> str:
    """The GB 11643 check character for the first 17 digits."""
    total = sum(int(d) * w for d, w in zip(first17, _WEIGHTS, strict=True))
    return _CHECK[total % 11]


def normalise_phone(raw: str) -> str:
    value = re.sub(r"[\s-]+", "", raw)
    if value.startswith("+86"):
        value = value[3:]
    if not _PHONE.match(value):
        raise PersonalDataError("手机号应为11位，以1开头")
    return value


def mask_id(value: str) -> str:
    """3413**********004X: region prefix and last four only."""
    return value[:4] + "*" * (len(value) - 8) + value[-4:]


def mask_phone(value: str) -> str:
    """138****8000."""
    return value[:3] + "****" + value[-4:]


def mask_text(text: str) -> str:
    """Mask every ID number and mobile number found in free text."""
    text = _ID_IN_TEXT.sub(lambda m: mask_id(m.group(0).upper()), text)
    return _PHONE_IN_TEXT.sub(lambda m: mask_phone(m.group(0)), text)


def mask_name(name: str) -> str:
    """张*兰 / 李*: keep the first and (for 3+ characters) the last character."""
    if len(name) <= 1:
        return name
    if len(name) == 2:
        return name[0] + "*"
    return name[0] + "*" * (len(name) - 2) + name[-1]


class Vault:
    """Encrypts, decrypts and hashes personal data with keys derived from one secret."""

    def __init__(self, secret: str) -> None:
        if len(secret) < 16:
            raise ValueError("HUIMIN_SECRET_KEY must be at least 16 characters")
        material = HKDF(algorithm=hashes.SHA256(), length=64, salt=b"huimin-personal-data",
                        info=b"fernet+hmac").derive(secret.encode())
        self._fernet = Fernet(base64.urlsafe_b64encode(material[:32]))
        self._hash_key = material[32:]

    def encrypt(self, value: str) -> str:
        return self._fernet.encrypt(value.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken as exc:
            raise PersonalDataError("cannot decrypt: wrong HUIMIN_SECRET_KEY?") from exc

    def lookup_hash(self, value: str) -> str:
        """A keyed hash that finds a record without storing the value in clear."""
        return hmac.new(self._hash_key, value.encode(), hashlib.sha256).hexdigest()

    def code_hash(self, code: str, salt: str) -> str:
        """Hash of a one-time code, bound to its owner (salt) so hashes are not reusable."""
        return hmac.new(self._hash_key, f"{salt}:{code}".encode(), hashlib.sha256).hexdigest()
