"""The Drive v3 client the Google Drive provider speaks through: credentials, one
google-api-python-client service per thread, retries with backoff, and errors translated into
mixsync's (AuthError naming the connection, TransientError after the budget, FileVanished and
PermanentFileError for one file). Secrets never appear in messages."""

from __future__ import annotations

import functools
import json
import threading
import time
from collections.abc import Callable
from typing import Any, NoReturn

import httplib2
from google.auth import exceptions as auth_exc
from googleapiclient.errors import HttpError
from tenacity import (
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_before_delay,
    wait_exponential_jitter,
)

from mixsync_dagster.config import GoogleDriveConnection
from mixsync_dagster.errors import (
    AuthError,
    FileVanished,
    PermanentFileError,
    ProviderError,
    TransientError,
)

DRIVE_READONLY = "https://www.googleapis.com/auth/drive.readonly"
TIMEOUT_SECONDS = 30
RATE_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded"})
PER_FILE_REASONS = frozenset(
    {"exportSizeLimitExceeded", "fileNotDownloadable", "cannotDownloadAbusiveFile"}
)


class BadRequest(ProviderError):
    """Drive answered 400: for a request with a page token, the token is refused."""


class _Retry(Exception):
    def __init__(self, reason: str, wait_hint: float | None = None):
        super().__init__(reason)
        self.wait_hint = wait_hint


def _reason(err: HttpError) -> str:
    try:
        body = json.loads(err.content or b"{}")
        return str(body["error"]["errors"][0].get("reason", ""))
    except (ValueError, KeyError, IndexError, TypeError):
        return ""


class DriveApi:
    """Calls Drive for one connection: `call(what, lambda service: request.execute())`."""

    def __init__(
        self,
        connection_id: str,
        conn: GoogleDriveConnection,
        *,
        max_attempts: int = 5,
        max_retry_seconds: float = 30.0,
        backoff_initial: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.connection_id = connection_id
        self.conn = conn
        self.max_attempts = max_attempts
        self.max_retry_seconds = max_retry_seconds
        self.backoff_initial = backoff_initial
        self._sleep = sleep
        self._local = threading.local()
        self._secrets = tuple(
            s.get_secret_value()
            for s in (
                conn.credentials_json,
                conn.oauth.client_secret if conn.oauth else None,
                conn.oauth.refresh_token if conn.oauth else None,
            )
            if s is not None and s.get_secret_value()
        )

    def __repr__(self) -> str:
        return f"DriveApi(connection={self.connection_id!r})"

    @functools.cached_property
    def credentials(self) -> Any:
        """Service account, OAuth refresh token, or application default credentials."""
        conn, who = self.conn, f"connection '{self.connection_id}'"
        if conn.credentials_json is not None:
            from google.oauth2 import service_account

            try:
                info = json.loads(conn.credentials_json.get_secret_value())
                return service_account.Credentials.from_service_account_info(
                    info, scopes=[DRIVE_READONLY], subject=conn.subject
                )
            except (ValueError, TypeError, KeyError, AttributeError):
                # The library's message may quote key material: keep it out of ours.
                raise AuthError(
                    f"{who}: credentials_json is not a usable service-account key (not JSON, "
                    "or client_email / token_uri / private_key missing). Check: download a "
                    "fresh JSON key for the service account"
                ) from None
        if conn.oauth is not None:
            from google.oauth2.credentials import Credentials

            return Credentials(
                None,
                refresh_token=conn.oauth.refresh_token.get_secret_value(),
                client_id=conn.oauth.client_id,
                client_secret=conn.oauth.client_secret.get_secret_value(),
                token_uri=conn.oauth.token_uri,
                scopes=[DRIVE_READONLY],
            )
        import google.auth

        try:
            creds, _ = google.auth.default(scopes=[DRIVE_READONLY])
        except auth_exc.DefaultCredentialsError:
            raise AuthError(
                f"{who}: no application default credentials found. Check: set "
                "credentials_json (a service-account key) or oauth (a refresh token), or "
                "GOOGLE_APPLICATION_CREDENTIALS"
            ) from None
        return creds

    def service(self) -> Any:
        """This thread's Drive client (httplib2 connections must not be shared by threads)."""
        service = getattr(self._local, "service", None)
        if service is None:
            import google_auth_httplib2
            from googleapiclient.discovery import build

            http = google_auth_httplib2.AuthorizedHttp(
                self.credentials, http=httplib2.Http(timeout=TIMEOUT_SECONDS)
            )
            options = None
            if self.conn.endpoint_url:
                options = {"api_endpoint": self.conn.endpoint_url.rstrip("/") + "/drive/v3/"}
            service = build(
                "drive",
                "v3",
                http=http,
                static_discovery=True,
                cache_discovery=False,
                client_options=options,
            )
            self._local.service = service
        return service

    def call(self, what: str, make: Callable[[Any], Any], *, file_id: str | None = None) -> Any:
        """Execute one request with retries; errors become ours (see the module docstring)."""

        def wait(rs: Any) -> float:
            hint = getattr(rs.outcome.exception(), "wait_hint", None)
            base = wait_exponential_jitter(
                multiplier=self.backoff_initial, max=8, jitter=self.backoff_initial
            )(rs)
            return max(base, hint or 0.0)

        retrying = Retrying(
            stop=stop_after_attempt(self.max_attempts) | stop_before_delay(self.max_retry_seconds),
            wait=wait,
            retry=retry_if_exception_type(_Retry),
            sleep=self._sleep,
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    return self._once(what, make, file_id)
        except _Retry as e:
            raise TransientError(
                f"connection '{self.connection_id}': Drive {what} still failing after "
                f"{retrying.statistics.get('attempt_number', self.max_attempts)} attempt(s): {e}"
            ) from None
        raise AssertionError("unreachable")

    def _once(self, what: str, make: Callable[[Any], Any], file_id: str | None) -> Any:
        try:
            return make(self.service())
        except HttpError as err:
            status, reason = err.resp.status, _reason(err)
            label = f"HTTP {status} {reason}".strip()
            if status == 429 or (status == 403 and reason in RATE_REASONS):
                hint = err.resp.get("retry-after")
                raise _Retry(label, float(hint) if hint and hint.isdigit() else None) from None
            if status in (408, 500, 502, 503, 504):
                raise _Retry(label) from None
            self._fail(err, what, status, reason, file_id)
        except (TimeoutError, httplib2.HttpLib2Error, ConnectionError) as err:
            raise _Retry(f"{type(err).__name__}: {self._scrub(str(err))}") from None
        except auth_exc.RefreshError as err:
            raise AuthError(
                f"connection '{self.connection_id}': Google refused the credentials while "
                f"{what} ({self._scrub(str(err))[:300]}). Check: {self._how()}"
            ) from None
        except auth_exc.TransportError as err:
            raise _Retry(f"token endpoint: {self._scrub(str(err))[:200]}") from None

    def _fail(
        self, err: HttpError, what: str, status: int, reason: str, file_id: str | None
    ) -> NoReturn:
        who = f"connection '{self.connection_id}'"
        message = self._scrub(str(getattr(err, "reason", "") or ""))[:300]
        if file_id is not None and status == 404:
            raise FileVanished(f"Drive file {file_id} is gone ({what})")
        if file_id is not None and status in (403, 400) and reason in PER_FILE_REASONS:
            raise PermanentFileError(f"Drive file {file_id}: {reason}: {message}")
        if status in (401, 403):
            raise AuthError(
                f"{who}: Drive refused the request while {what} (HTTP {status} {reason}: "
                f"{message}). Check: {self._how()}, and that the folder or shared drive is "
                "shared with that account"
            )
        if status == 400:
            raise BadRequest(f"{who}: Drive refused {what} (HTTP 400 {reason}: {message})")
        if status == 404:
            raise ProviderError(
                f"{who}: Drive says not found while {what}: the id is wrong, or it is not "
                "shared with the connection's account"
            )
        raise ProviderError(f"{who}: Drive refused {what} (HTTP {status} {reason}: {message})")

    def _how(self) -> str:
        if self.conn.credentials_json is not None:
            return "the service-account key in credentials_json" + (
                f" and domain-wide delegation for subject {self.conn.subject}"
                if self.conn.subject
                else ""
            )
        if self.conn.oauth is not None:
            return "oauth.client_id / client_secret / refresh_token (scope drive.readonly)"
        return "the application default credentials (scope drive.readonly)"

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text
