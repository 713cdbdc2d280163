"""AWS Signature Version 4, checked the way AWS checks it: the simulated Bedrock's auth.

Written from the public specification (AWS "Create a signed AWS API request"), independently of botocore,
so that a test signing with botocore (the gateway, the anthropic SDK's Bedrock client) and passing here shows
both sides agree on the algorithm: canonical request (path URI-encoded a second time, sorted query, the
signed headers with trimmed values, the body's SHA-256), string to sign, HMAC key chain.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from urllib.parse import quote, unquote

ALGORITHM = "AWS4-HMAC-SHA256"
MAX_SKEW_S = 300  # AWS refuses a request signed more than 5 minutes away from its clock
_AUTH = re.compile(r"^AWS4-HMAC-SHA256 Credential=([^,\s]+),\s*SignedHeaders=([^,\s]+),\s*Signature=([0-9a-f]{64})$")


class Refused(Exception):
    """A request AWS would refuse: status, exception type (`x-amzn-ErrorType`) and message, as AWS words them."""

    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(message)
        self.status, self.error_type, self.message = status, error_type, message


def verify(method: str, raw_path: str, headers: Mapping[str, str], body: bytes, *, access_key: str | None,
           secret_key: str, service: str, now: datetime | None = None) -> None:
    """Raise `Refused` unless the request is signed with `secret_key` (and `access_key`, when not None) for
    `service`. `raw_path` is the path and query as sent (still percent-encoded)."""
    auth = headers.get("Authorization")
    if not auth:
        raise Refused(403, "MissingAuthenticationTokenException", "Missing Authentication Token")
    match = _AUTH.match(auth.strip())
    if match is None:
        raise Refused(403, "IncompleteSignatureException",
                      f"Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' parameters. "
                      f"Authorization={auth.split(' ')[0]}")
    credential, signed_headers, signature = match.groups()
    parts = credential.split("/")
    if len(parts) != 5 or parts[4] != "aws4_request":
        raise Refused(403, "IncompleteSignatureException", "Credential should be scoped to a valid region. ")
    key_id, day, region, scope_service, _ = parts
    if access_key is not None and not hmac.compare_digest(key_id, access_key):
        raise Refused(403, "UnrecognizedClientException", "The security token included in the request is invalid.")
    if scope_service != service:
        raise Refused(403, "InvalidSignatureException",
                      f"Credential should be scoped to correct service: '{service}'. ")
    amz_date = headers.get("X-Amz-Date", "")
    _check_date(amz_date, day, now or datetime.now(UTC))
    names = signed_headers.split(";")
    if "host" not in names:
        raise Refused(403, "InvalidSignatureException", "'Host' or ':authority' must be a 'SignedHeader' in the "
                      "AWS Authorization.")
    canonical = canonical_request(method, raw_path, headers, names, body)
    scope = f"{day}/{region}/{service}/aws4_request"
    to_sign = "\n".join((ALGORITHM, amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()))
    expected = hmac.new(signing_key(secret_key, day, region, service), to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature):
        raise Refused(403, "InvalidSignatureException",
                      "The request signature we calculated does not match the signature you provided. Check your "
                      "AWS Secret Access Key and signing method. Consult the service documentation for details.")


def _check_date(amz_date: str, day: str, now: datetime) -> None:
    try:
        signed_at = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise Refused(403, "IncompleteSignatureException",
                      "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.") from None
    if not amz_date.startswith(day):
        raise Refused(403, "InvalidSignatureException", "Date in Credential scope does not match YYYYMMDD from "
                      "ISO-8601 version of date from HTTP")
    if abs((now - signed_at).total_seconds()) > MAX_SKEW_S:
        raise Refused(403, "InvalidSignatureException", f"Signature expired: {amz_date} is now earlier than "
                      f"{now.strftime('%Y%m%dT%H%M%SZ')} (5 min.)")


def canonical_request(method: str, raw_path: str, headers: Mapping[str, str], names: list[str], body: bytes) -> str:
    path, _, query = raw_path.partition("?")
    # Every path segment URI-encoded twice (all services but S3): the path arrives encoded once.
    canonical_path = quote(path or "/", safe="/~")
    pairs = sorted((quote(unquote(k), safe="-_.~"), quote(unquote(v), safe="-_.~"))
                   for k, _, v in (item.partition("=") for item in query.split("&") if item))
    canonical_query = "&".join(f"{k}={v}" for k, v in pairs)
    lines = []
    for name in names:
        values = headers.getall(name, []) if hasattr(headers, "getall") else [headers.get(name, "")]
        lines.append(f"{name}:{','.join(' '.join(str(v).split()) for v in values)}\n")
    payload_hash = headers.get("X-Amz-Content-Sha256") or hashlib.sha256(body).hexdigest()
    return "\n".join((method.upper(), canonical_path, canonical_query, "".join(lines), ";".join(names),
                      payload_hash))


def signing_key(secret_key: str, day: str, region: str, service: str) -> bytes:
    key = hmac.new(f"AWS4{secret_key}".encode(), day.encode(), hashlib.sha256).digest()
    for part in (region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key
