"""The RPC signature (version 1.0) of Alibaba Cloud's Dysmsapi."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime
from urllib.parse import quote


def percent_encode(value: str) -> str:
    """RFC 3986: letters, digits, '-', '_', '.', '~' kept; everything else %XX of UTF-8."""
    return quote(value, safe="-_.~")


def canonical_query(params: Mapping[str, str]) -> str:
    """Every parameter but Signature, sorted by name, encoded and joined with '&'."""
    return "&".join(f"{percent_encode(k)}={percent_encode(v)}"
                    for k, v in sorted(params.items()) if k != "Signature")


def rpc_string_to_sign(method: str, params: Mapping[str, str]) -> str:
    return f"{method}&{percent_encode('/')}&{percent_encode(canonical_query(params))}"


def rpc_signature(method: str, params: Mapping[str, str], secret: str) -> str:
    """base64(HMAC-SHA1(secret + '&', StringToSign))."""
    digest = hmac.new((secret + "&").encode("utf-8"),
                      rpc_string_to_sign(method, params).encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def iso_timestamp(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

