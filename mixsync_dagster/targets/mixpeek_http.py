"""HTTP to the Mixpeek API: one keep-alive pool, retries, the API's error shape, no secrets.

Every call sends `Authorization: Bearer <api_key>` and `X-Namespace: <namespace>`. Errors come
as `{success: false, status, error: {message, type, code, details}}` (the SDK's ErrorResponse);
`error.details` may carry `retry_after_seconds`, `retryable` and, for a refused body, the
problems by location (`errors: [{loc, msg, type}]`).

Retries (the policy of the SDK's own client, `mixpeek/_client/client.py`, within a bounded
budget): 429 and 5xx, dropped connections and timeouts are retried with exponential backoff and
jitter; the wait is the `Retry-After` header, else `error.details.retry_after_seconds`, else
the backoff, capped at `RetryBudget.max_wait_seconds`. An answer marked `retryable: false` is
never retried. After the budget a `TransientError` fails the run (the files stay pending).
401/403 raise `AuthError`; another 4xx is `MixpeekRejected` for the caller to place.

A failure after the request may have reached the API (5xx, a dropped connection, a read
timeout) is *ambiguous*: a caller whose request is not idempotent passes `recheck`, which looks
at the API's state before the next attempt and can end the call there.

The API key and the namespace never appear in messages, logs or `repr`: any text the API sends
back is scrubbed of both before it is used.
"""

from __future__ import annotations

import json
import random
import re
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
)

from mixsync_dagster.errors import AuthError, ProviderError, TransientError
from mixsync_dagster.redaction import get_logger
from mixsync_dagster.redaction import redact as redact_env

log = get_logger("mixsync.targets.mixpeek")


@dataclass(frozen=True)
class RetryBudget:
    """How hard one call tries before the target is declared unavailable (TransientError)."""

    attempts: int = 6
    initial_seconds: float = 0.5
    """First backoff; doubles per attempt, each wait drawn from [half, full] (jitter)."""
    max_wait_seconds: float = 30.0
    """Cap on one wait, the API's advice included (the SDK's MAX_RETRY_WAIT_S)."""
    deadline_seconds: float = 120.0
    """No new attempt starts after this long."""


@dataclass(frozen=True)
class ApiError:
    """An error answer, read from the API's shape (or whatever else came back)."""

    status: int
    message: str
    type: str | None = None
    code: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def retryable(self) -> bool | None:
        v = self.details.get("retryable")
        return v if isinstance(v, bool) else None

    @property
    def retry_after(self) -> float | None:
        try:
            v = float(self.details["retry_after_seconds"])
        except (KeyError, TypeError, ValueError):
            return None
        return max(0.0, v)

    def problems(self) -> list[tuple[tuple[Any, ...], str]]:
        """(location, message) of each problem with a refused body, when the API lists them."""
        out = []
        for e in self.details.get("errors") or []:
            if isinstance(e, dict):
                out.append((tuple(e.get("loc") or ()), str(e.get("msg") or e)))
        return out

    def describe(self) -> str:
        kind = self.code or self.type
        text = f"{self.message} ({kind})" if kind else self.message
        extra = [f"{loc_text(loc)}: {msg}" for loc, msg in self.problems()[1:6]]
        return "; ".join([text, *extra])


class MixpeekRejected(ProviderError):
    """The API refused a call for good (a 4xx other than 401/403)."""

    def __init__(self, message: str, *, error: ApiError):
        super().__init__(message)
        self.status = error.status
        self.error = error


class _Retry(Exception):
    """One attempt failed in a way worth retrying."""

    def __init__(self, reason: str, *, ambiguous: bool, wait: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.ambiguous = ambiguous
        """True when the API may have acted on the request before the failure."""
        self.wait = wait
        """What the API asked us to wait, if it said."""


def loc_text(loc: tuple[Any, ...] | list[Any]) -> str:
    """('body', 'objects', 3, 'blobs', 0, 'foo') -> 'objects[3].blobs[0].foo'."""
    out = ""
    for part in loc:
        if part == "body" and not out:
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "body"


def parse_error(resp: httpx.Response) -> ApiError:
    """The API's error shape; a FastAPI `detail`, S3's XML or plain text as a fallback."""
    try:
        body = resp.json()
    except ValueError:
        text = resp.text.strip()
        code = re.search(r"<Code>(.*?)</Code>", text)
        msg = re.search(r"<Message>(.*?)</Message>", text, re.S)
        if code:
            return ApiError(resp.status_code, msg.group(1) if msg else code.group(1), code.group(1))
        return ApiError(resp.status_code, text[:500] or resp.reason_phrase)
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        details = err.get("details")
        return ApiError(
            resp.status_code,
            str(err.get("message") or "no message"),
            str(err["type"]) if err.get("type") else None,
            str(err["code"]) if err.get("code") else None,
            details if isinstance(details, dict) else {},
        )
    if isinstance(body, dict) and "detail" in body:
        detail = body["detail"]
        if isinstance(detail, list):
            errors = [d for d in detail if isinstance(d, dict)]
            first = errors[0].get("msg") if errors else detail
            return ApiError(resp.status_code, str(first), details={"errors": errors})
        return ApiError(resp.status_code, str(detail))
    return ApiError(resp.status_code, json.dumps(body)[:500])


def _header_wait(resp: httpx.Response) -> float | None:
    value = resp.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def _transport(size: int) -> httpx.HTTPTransport:
    """Keep-alive pool without Nagle: httpx writes a request's headers and body separately,
    and Nagle would hold the body back until the headers are acknowledged."""
    return httpx.HTTPTransport(
        limits=httpx.Limits(max_connections=size, max_keepalive_connections=size),
        socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
    )


class MixpeekHttp:
    """The calls of one Mixpeek bucket target. `label` names it in every message."""

    def __init__(
        self,
        label: str,
        base_url: str,
        api_key: str,
        namespace: str,
        *,
        timeout_seconds: float,
        retry: RetryBudget,
        pool_size: int,
    ):
        self.label = label
        self.base_url = base_url.rstrip("/")
        self.retry = retry
        # Scrubbed from any text the API sends back (an API may echo what it refused).
        self._secrets = sorted((s for s in (api_key, namespace) if len(s) >= 4), key=len)[::-1]
        timeout = httpx.Timeout(timeout_seconds, connect=min(10.0, timeout_seconds))
        self._api = httpx.Client(
            base_url=self.base_url,
            headers={
                "Authorization": f"Bearer {api_key}",
                "X-Namespace": namespace,
                "Accept": "application/json",
                "User-Agent": "mixsync-dagster",
            },
            timeout=timeout,
            transport=_transport(pool_size),
        )
        # Presigned URLs carry their own authorisation: never send them the API key.
        self._storage = httpx.Client(timeout=timeout, transport=_transport(pool_size))

    def __repr__(self) -> str:
        return f"MixpeekHttp(label={self.label!r}, base_url={redact_env(self.base_url)!r})"

    def close(self) -> None:
        self._api.close()
        self._storage.close()

    def redact(self, text: str) -> str:
        """The key and namespace (even written in the file itself), values read from the
        environment and URL userinfo, out of text the API sent back."""
        for s in self._secrets:
            text = text.replace(s, "***")
        return redact_env(text)

    # ------------------------------------------------------------ one attempt

    def _classify(self, what: str, resp: httpx.Response) -> httpx.Response:
        """Raise _Retry for a 429/5xx worth retrying; return any other answer."""
        if resp.status_code != 429 and resp.status_code < 500:
            return resp
        err = parse_error(resp)
        if err.retryable is False:
            return resp  # the API says another attempt will not help
        wait = _header_wait(resp)
        raise _Retry(
            f"{what}: HTTP {resp.status_code}: {self.redact(err.describe())}",
            ambiguous=resp.status_code >= 500,
            wait=wait if wait is not None else err.retry_after,
        )

    def _transport_error(self, what: str, e: httpx.TransportError) -> _Retry:
        if isinstance(e, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
            return _Retry(f"{what}: cannot connect ({type(e).__name__})", ambiguous=False)
        return _Retry(
            f"{what}: {type(e).__name__}: {self.redact(str(e)) or 'no answer'}", ambiguous=True
        )

    def _send(
        self, method: str, path: str, body: Any, params: dict[str, Any] | None
    ) -> httpx.Response:
        what = f"{method} {path}"
        content = headers = None
        if body is not None:
            content = json.dumps(body, separators=(",", ":"), default=str).encode()
            headers = {"Content-Type": "application/json"}
        try:
            resp = self._api.request(method, path, content=content, params=params, headers=headers)
        except httpx.TransportError as e:
            raise self._transport_error(what, e) from None
        return self._classify(what, resp)

    # ------------------------------------------------------------ retried calls

    def _wait(self, rs: RetryCallState) -> float:
        b = self.retry
        exc = rs.outcome.exception() if rs.outcome else None
        if isinstance(exc, _Retry) and exc.wait is not None:
            return min(b.max_wait_seconds, exc.wait) + random.uniform(0, 0.05)
        backoff = min(b.max_wait_seconds, b.initial_seconds * 2 ** (rs.attempt_number - 1))
        return random.uniform(backoff / 2, backoff)

    def _log_retry(self, rs: RetryCallState) -> None:
        exc = rs.outcome.exception() if rs.outcome else None
        sleep = rs.next_action.sleep if rs.next_action else 0.0
        log.warning(
            "Mixpeek bucket %r: %s; retry %d/%d in %.2f s",
            self.label,
            exc,
            rs.attempt_number,
            self.retry.attempts - 1,
            sleep,
        )

    def _attempts(self) -> Retrying:
        b = self.retry
        return Retrying(
            retry=retry_if_exception_type(_Retry),
            stop=stop_after_attempt(b.attempts) | stop_after_delay(b.deadline_seconds),
            wait=self._wait,
            before_sleep=self._log_retry,
            reraise=True,
        )

    def _gave_up(self, e: _Retry) -> TransientError:
        return TransientError(
            f"Mixpeek bucket '{self.label}' unavailable: {e.reason} (gave up after the retry "
            f"budget: {self.retry.attempts} attempts / {self.retry.deadline_seconds:g} s)"
        )

    def call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: dict[str, Any] | None = None,
        accept: tuple[int, ...] = (),
        recheck: Callable[[], bool] | None = None,
    ) -> httpx.Response | None:
        """A call retried within the budget: a 2xx or `accept`ed answer, else an exception.

        After an ambiguous failure, `recheck()` runs before the next attempt; when it returns
        True the API already did what was asked and the call returns None.
        """
        resp: httpx.Response | None = None
        ambiguous = False
        try:
            for attempt in self._attempts():
                with attempt:
                    if ambiguous and recheck is not None and recheck():
                        return None
                    try:
                        resp = self._send(method, path, body, params)
                    except _Retry as e:
                        ambiguous = ambiguous or e.ambiguous
                        raise
        except _Retry as e:
            raise self._gave_up(e) from None
        assert resp is not None
        if resp.is_success or resp.status_code in accept:
            return resp
        raise self.refused(resp, f"{method} {path}")

    def json(self, method: str, path: str, **kw: Any) -> Any:
        """`call` for the common case: the answer's JSON body."""
        resp = self.call(method, path, **kw)
        assert resp is not None
        return resp.json()

    def refused(self, resp: httpx.Response, where: str) -> Exception:
        """The exception for an answer that will not get better by retrying."""
        err = parse_error(resp)
        detail = self.redact(err.describe())
        if resp.status_code in (401, 403):
            return AuthError(
                f"Mixpeek refused the credentials of bucket '{self.label}' "
                f"(HTTP {resp.status_code} on {where}: {detail}); check api_key and namespace"
            )
        if resp.status_code == 429 or resp.status_code >= 500:
            return TransientError(
                f"Mixpeek bucket '{self.label}' unavailable: {where}: HTTP {resp.status_code}: "
                f"{detail} (the API marked it not retryable)"
            )
        return MixpeekRejected(
            f"Mixpeek rejected {where} (HTTP {resp.status_code}): {detail}", error=err
        )

    # ------------------------------------------------------------ presigned uploads

    def put_presigned(
        self, url: str, body: Callable[[], bytes | Iterator[bytes]], size: int, content_type: str
    ) -> str | None:
        """PUT the bytes to a presigned URL (idempotent, so retried); returns the ETag.

        The URL is signed for `content_type`: the request must carry exactly that
        Content-Type, or the store refuses it."""
        where = f"PUT {urlsplit(url).path}"
        headers = {"Content-Type": content_type, "Content-Length": str(size)}
        resp: httpx.Response | None = None
        try:
            for attempt in self._attempts():
                with attempt:
                    try:
                        resp = self._storage.put(url, content=body(), headers=headers)
                    except httpx.TransportError as e:
                        raise self._transport_error(where, e) from None
                    resp = self._classify(where, resp)
        except _Retry as e:
            raise self._gave_up(e) from None
        assert resp is not None
        if not resp.is_success:
            err = parse_error(resp)
            raise MixpeekRejected(
                f"presigned upload refused (HTTP {resp.status_code}): "
                f"{self.redact(err.describe())}",
                error=err,
            )
        return resp.headers.get("ETag")
