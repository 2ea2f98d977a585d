"""TC3-HMAC-SHA256, Tencent Cloud's "signature v3", as documented step by step."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime

from yarl import URL

SERVICE = "sms"
ALGORITHM = "TC3-HMAC-SHA256"
CONTENT_TYPE = "application/json"
SIGNED_HEADERS = "content-type;host"

def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tc3_date(timestamp: int) -> str:
    """The UTC date of the timestamp (never local time: the scope breaks at midnight)."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")


def tc3_canonical_request(*, method: str, uri: str, query: str, content_type: str, host: str,
                          payload: bytes) -> str:
    """Step 1: method, URI, query, the two signed headers, their names, the payload hash."""
    headers = f"content-type:{content_type.strip().lower()}\nhost:{host.strip().lower()}\n"
    return "\n".join([method, uri, query, headers, SIGNED_HEADERS, sha256_hex(payload)])


def tc3_string_to_sign(*, timestamp: int, service: str, canonical_request: str) -> str:
    """Step 2: algorithm, timestamp, credential scope, hash of the canonical request."""
    scope = f"{tc3_date(timestamp)}/{service}/tc3_request"
    return "\n".join([ALGORITHM, str(timestamp), scope,
                      sha256_hex(canonical_request.encode("utf-8"))])


def tc3_signature(secret_key: str, date: str, service: str, string_to_sign: str) -> str:
    """Step 3: derive the signing key from the secret, date and service; sign; hex."""
    def mac(key: bytes, msg: str) -> bytes:
        return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()

    secret_date = mac(("TC3" + secret_key).encode("utf-8"), date)
    secret_service = mac(secret_date, service)
    secret_signing = mac(secret_service, "tc3_request")
    return hmac.new(secret_signing, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


def tc3_authorization(secret_id: str, secret_key: str, *, service: str, host: str,
                      payload: bytes, timestamp: int, content_type: str = CONTENT_TYPE,
                      method: str = "POST", uri: str = "/", query: str = "") -> str:
    """Step 4: the ``Authorization`` header for one request."""
    canonical = tc3_canonical_request(method=method, uri=uri, query=query,
                                      content_type=content_type, host=host, payload=payload)
    to_sign = tc3_string_to_sign(timestamp=timestamp, service=service,
                                 canonical_request=canonical)
    date = tc3_date(timestamp)
    signature = tc3_signature(secret_key, date, service, to_sign)
    return (f"{ALGORITHM} Credential={secret_id}/{date}/{service}/tc3_request, "
            f"SignedHeaders={SIGNED_HEADERS}, Signature={signature}")


def host_header(url: URL) -> str:
    """What goes in (and is signed as) the Host header: the port only when not the default."""
    host = (url.raw_host or "").lower()
    if url.explicit_port is not None and not url.is_default_port():
        host += f":{url.port}"
    return host

