"""Sensitive personal information: ID numbers (身份证号) and phone numbers.

They are stored encrypted (Fernet) with a keyed hash (HMAC-SHA256) for lookup,
and shown only masked. Both keys derive from ``HUIMIN_SECRET_KEY`` (HKDF), which
never lives in the repository; while it is being changed the previous secret
(``HUIMIN_SECRET_KEY_PREVIOUS``) is accepted too (see ``huimin.keys``). ID numbers
are checked with the GB 11643-1999 check digit.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
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


KEY_VARIABLE = "HUIMIN_SECRET_KEY"
PREVIOUS_KEY_VARIABLE = "HUIMIN_SECRET_KEY_PREVIOUS"


def _derive(secret: str) -> tuple[Fernet, bytes]:
    """The Fernet key and the hash key derived from one secret."""
    material = HKDF(algorithm=hashes.SHA256(), length=64, salt=b"huimin-personal-data",
                    info=b"fernet+hmac").derive(secret.encode())
    return Fernet(base64.urlsafe_b64encode(material[:32])), material[32:]


class Vault:
    """Encrypts, decrypts and hashes personal data with keys derived from one secret.

    While the secret is being changed (``huimin keys rotate``) the vault also holds
    the previous secret: new values are always encrypted and hashed under the
    current one, decryption accepts either (MultiFernet), and lookups by keyed hash
    use :meth:`lookup_hashes`, which gives the current hash and then the previous.
    """

    def __init__(self, secret: str, previous: str | None = None) -> None:
        if len(secret) < 16:
            raise ValueError(f"{KEY_VARIABLE} must be at least 16 characters")
        if previous is not None and len(previous) < 16:
            raise ValueError(f"{PREVIOUS_KEY_VARIABLE} must be at least 16 characters")
        if previous is not None and hmac.compare_digest(previous.encode(), secret.encode()):
            raise ValueError(f"{PREVIOUS_KEY_VARIABLE} must differ from {KEY_VARIABLE}")
        self._fernet, self._hash_key = _derive(secret)
        self._previous_hash_key: bytes | None = None
        self._previous_fernet: Fernet | None = None
        fernets = [self._fernet]
        if previous is not None:
            self._previous_fernet, self._previous_hash_key = _derive(previous)
            fernets.append(self._previous_fernet)
        self._any = MultiFernet(fernets)
        self.key_id = self._fingerprint(self._hash_key)
        self.previous_key_id = (self._fingerprint(self._previous_hash_key)
                                if self._previous_hash_key else None)

    @staticmethod
    def _fingerprint(hash_key: bytes) -> str:
        """Eight hex digits that name a key in messages without revealing it."""
        return hmac.new(hash_key, b"huimin key id", hashlib.sha256).hexdigest()[:8]

    @property
    def rotating(self) -> bool:
        """True while a previous key is configured."""
        return self._previous_hash_key is not None

    def encrypt(self, value: str) -> str:
        return self._fernet.encrypt(value.encode()).decode()

    def decrypt(self, token: str) -> str:
        """The value, whichever of the current or previous key encrypted it."""
        try:
            return self._any.decrypt(token.encode()).decode()
        except InvalidToken as exc:
            raise PersonalDataError(f"cannot decrypt: wrong {KEY_VARIABLE}?") from exc

    def unseal(self, token: str) -> tuple[str, bool]:
        """The value and whether it is already encrypted under the current key."""
        try:
            return self._fernet.decrypt(token.encode()).decode(), True
        except InvalidToken:
            if self._previous_fernet is None:
                raise PersonalDataError(f"cannot decrypt: wrong {KEY_VARIABLE}?") from None
        try:
            return self._previous_fernet.decrypt(token.encode()).decode(), False
        except InvalidToken:
            raise PersonalDataError(f"cannot decrypt: wrong {KEY_VARIABLE}?") from None

    def is_current(self, token: str) -> bool:
        """Whether the current key alone decrypts ``token``."""
        try:
            self._fernet.decrypt(token.encode())
        except InvalidToken:
            return False
        return True

    def lookup_hash(self, value: str) -> str:
        """A keyed hash that finds a record without storing the value in clear (current key)."""
        return hmac.new(self._hash_key, value.encode(), hashlib.sha256).hexdigest()

    def lookup_hashes(self, value: str) -> tuple[str, ...]:
        """Every hash a stored record of ``value`` may carry: the current key's, then,
        while keys rotate, the previous key's. Query with ``column.in_(...)``."""
        if self._previous_hash_key is None:
            return (self.lookup_hash(value),)
        return (self.lookup_hash(value),
                hmac.new(self._previous_hash_key, value.encode(), hashlib.sha256).hexdigest())

    def code_hash(self, code: str, salt: str) -> str:
        """Hash of a one-time code, bound to its owner (salt) so hashes are not reusable."""
        return hmac.new(self._hash_key, f"{salt}:{code}".encode(), hashlib.sha256).hexdigest()

    def code_hashes(self, code: str, salt: str) -> tuple[str, ...]:
        """The code's hash under the current key, then (while rotating) the previous one.

        A code's hash cannot be recomputed without the code, so codes issued before
        the rotation keep their old hash and are accepted under either key until
        they lapse."""
        if self._previous_hash_key is None:
            return (self.code_hash(code, salt),)
        previous = hmac.new(self._previous_hash_key, f"{salt}:{code}".encode(),
                            hashlib.sha256).hexdigest()
        return (self.code_hash(code, salt), previous)

    def code_matches(self, stored: str, code: str, salt: str) -> bool:
        """Constant-time check of a typed code against a stored hash (either key)."""
        found = False
        for candidate in self.code_hashes(code, salt):
            found |= hmac.compare_digest(stored, candidate)
        return found
