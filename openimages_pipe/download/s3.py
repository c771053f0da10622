"""The few S3 requests that pyarrow cannot send, signed here (AWS Signature Version 4).

pyarrow's S3FileSystem reads, lists, writes and deletes objects, but sends no conditional
headers; the share lock and the `.num-shards` claim need them: `If-None-Match: *` (create only if
absent) and `If-Match: <etag>` (replace only the version we read). Both are standard S3 (AWS since
2024) and SeaweedFS honours them. Signing with hashlib and hmac is a page, where boto3 would be a
dependency of 90 MB for three requests.

Credentials, region and endpoint come from the standard AWS environment variables, the same ones
`storage` hands to pyarrow, so both talk to the same store: `AWS_ACCESS_KEY_ID`,
`AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION` (or `AWS_DEFAULT_REGION`) and
`AWS_ENDPOINT_URL` (or `AWS_ENDPOINT_URL_S3`) for any S3-compatible store, addressed path-style.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import http.client
import os
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass

# One request, connection included: the lock's requests are tiny, and a store that takes longer
# is one the run should not start on.
TIMEOUT_S = 30.0
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
RETRIES = 3  # more tries of a request the store answered with a 5xx, or did not answer
RETRIED_STATUSES = (500, 502, 503, 504)
BACKOFF_S = 0.2  # before the first retry; doubles for each next one (0.2 + 0.4 + 0.8 s at most)


class S3Error(OSError):
    """A request the store refused or failed (an HTTP status, or no answer at all)."""


@dataclass(frozen=True)
class Credentials:
    access_key: str | None
    secret_key: str | None
    session_token: str | None
    region: str
    endpoint: str | None  # scheme://host[:port] of an S3-compatible store; None: AWS itself

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Credentials:
        region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1"
        endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or None
        return cls(
            env.get("AWS_ACCESS_KEY_ID"),
            env.get("AWS_SECRET_ACCESS_KEY"),
            env.get("AWS_SESSION_TOKEN"),
            region,
            endpoint.rstrip("/") if endpoint else None,
        )


@dataclass(frozen=True)
class ObjectUrl:
    """One object (or, with key "", a bucket)."""

    bucket: str
    key: str

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes

    @property
    def etag(self) -> str | None:
        return self.headers.get("etag")

    def server_time(self, header: str = "date") -> dt.datetime | None:
        """A date header (`date`: now, `last-modified`: the object's) as the store's clock says."""
        value = self.headers.get(header)
        return None if value is None else _http_date(value)


def _http_date(value: str) -> dt.datetime:
    return dt.datetime.strptime(value, "%a, %d %b %Y %H:%M:%S GMT").replace(tzinfo=dt.UTC)


class S3Client:
    """Signed requests to one store; one connection per request (the lock sends a few a minute)."""

    def __init__(self, credentials: Credentials) -> None:
        self.credentials = credentials
        endpoint = credentials.endpoint or f"https://s3.{credentials.region}.amazonaws.com"
        parsed = urllib.parse.urlsplit(endpoint)
        self._https = parsed.scheme == "https"
        self._host = parsed.netloc

    def request(
        self, method: str, url: ObjectUrl, body: bytes = b"", headers: Mapping[str, str] = {}
    ) -> Reply:
        """One request, tried again after a 5xx (S3's InternalError and SlowDown ask for it, and
        the AWS SDKs do so) or a dropped connection: up to RETRIES more times, backing off. A
        conditional PUT that landed before its answer was lost then meets its own object (412):
        `lease` tells that apart by the body."""
        for attempt in range(RETRIES + 1):
            try:
                reply = self._request_once(method, url, body, headers)
            except S3Error:
                if attempt == RETRIES:
                    raise
            else:
                if reply.status not in RETRIED_STATUSES or attempt == RETRIES:
                    return reply
            time.sleep(BACKOFF_S * 2**attempt)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _request_once(
        self, method: str, url: ObjectUrl, body: bytes, headers: Mapping[str, str]
    ) -> Reply:
        path = "/" + urllib.parse.quote(url.bucket + ("/" + url.key if url.key else ""), "/~")
        signed = self._sign(method, path, body, headers)
        kind = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        connection = kind(self._host, timeout=TIMEOUT_S)
        try:
            connection.request(method, path, body=body, headers=signed)
            answer = connection.getresponse()
            reply = Reply(answer.status, {k.lower(): v for k, v in answer.getheaders()}, b"")
            reply = Reply(reply.status, reply.headers, answer.read())
        except (OSError, http.client.HTTPException) as e:
            raise S3Error(f"{method} {url}: {e}") from e
        finally:
            connection.close()
        return reply

    def _sign(
        self, method: str, path: str, body: bytes, headers: Mapping[str, str]
    ) -> dict[str, str]:
        """The headers of a request signed with SigV4 (payload hashed, no query string)."""
        creds = self.credentials
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        signed = {k.lower(): v.strip() for k, v in headers.items()}
        signed |= {"host": self._host, "x-amz-date": stamp}
        signed["x-amz-content-sha256"] = hashlib.sha256(body).hexdigest() if body else EMPTY_SHA256
        if creds.session_token:
            signed["x-amz-security-token"] = creds.session_token
        if not (creds.access_key and creds.secret_key):
            return signed  # anonymous: a public bucket may still answer
        names = sorted(signed)
        canonical = "\n".join(
            [method, path, "", *(f"{n}:{signed[n]}" for n in names), "", ";".join(names),
             signed["x-amz-content-sha256"]]
        )  # fmt: skip
        scope = f"{stamp[:8]}/{creds.region}/s3/aws4_request"
        digest = hashlib.sha256(canonical.encode()).hexdigest()
        to_sign = f"AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{digest}"
        key = ("AWS4" + creds.secret_key).encode()
        for part in scope.split("/"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        signed["authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={creds.access_key}/{scope}, "
            f"SignedHeaders={';'.join(names)}, Signature={signature}"
        )
        return signed

    def put(
        self,
        url: ObjectUrl,
        body: bytes,
        *,
        if_none_match: bool = False,
        if_match: str | None = None,
    ) -> Reply:
        """PUT an object; with a condition, 412 (or 409, a concurrent conditional write) is an
        answer (`Reply.status`), not an error."""
        headers = {"If-None-Match": "*"} if if_none_match else {}
        headers |= {"If-Match": if_match} if if_match else {}
        return self._expect(self.request("PUT", url, body, headers), url, 200, 409, 412)

    def get(self, url: ObjectUrl) -> Reply:
        """GET an object; 404 is an answer (absent), not an error."""
        return self._expect(self.request("GET", url), url, 200, 404)

    def delete(self, url: ObjectUrl, if_match: str | None = None) -> Reply:
        headers = {"If-Match": if_match} if if_match else {}
        return self._expect(self.request("DELETE", url, b"", headers), url, 200, 204, 404, 412)

    def create_bucket(self, bucket: str) -> None:
        """Make the bucket unless it exists (ours or not: a bucket of another's is refused later,
        at the first write)."""
        reply = self.request("PUT", ObjectUrl(bucket, ""))
        self._expect(reply, ObjectUrl(bucket, ""), 200, 409)

    @staticmethod
    def _expect(reply: Reply, url: ObjectUrl, *statuses: int) -> Reply:
        if reply.status not in statuses:
            words = reply.body[:300].decode("utf-8", "replace").replace("\n", " ")
            raise S3Error(f"{url}: HTTP {reply.status}: {words}")
        return reply
