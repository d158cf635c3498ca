"""An S3 connection that names a role: its credentials come from STS AssumeRole.

The role is assumed with the default AWS credential chain (a pod's or instance's role, a
profile, the environment), as Mixpeek's own `{role_arn, external_id}` form has its account
assume the customer's role. botocore does the work: `AssumeRoleCredentialFetcher` calls STS
with the external id, and `DeferredRefreshableCredentials` fetches on first use and again
before expiry, so a run longer than `duration_seconds` keeps going. The chain is read at each
fetch, not when the connection is built, so a missing one is an error of the request that
needed it (an AuthError naming the connection), never a crash at start-up.
"""

from __future__ import annotations

import threading
from typing import Any

import boto3
import botocore.session
from botocore.credentials import (
    AssumeRoleCredentialFetcher,
    CredentialProvider,
    DeferredRefreshableCredentials,
)
from botocore.exceptions import NoCredentialsError

from mixsync_dagster.config import S3Credentials

_lock = threading.Lock()
_sessions: dict[tuple[Any, ...], boto3.session.Session] = {}


class _AssumedRole(CredentialProvider):
    METHOD = "mixsync-assume-role"
    CANONICAL_NAME = "mixsync-assume-role"

    def __init__(self, creds: S3Credentials, region: str):
        super().__init__()
        self._creds = creds
        self._region = region

    def _fetch(self) -> dict[str, Any]:
        source = botocore.session.get_session()
        base = source.get_credentials()
        if base is None:
            raise NoCredentialsError()
        c = self._creds
        extra: dict[str, Any] = {
            "RoleSessionName": c.role_session_name,
            "DurationSeconds": c.duration_seconds,
        }
        if c.external_id is not None:
            extra["ExternalId"] = c.external_id

        def sts(service: str, **kwargs: Any) -> Any:
            return source.create_client(
                service, region_name=self._region, endpoint_url=c.sts_endpoint_url, **kwargs
            )

        fetcher = AssumeRoleCredentialFetcher(
            client_creator=sts, source_credentials=base, role_arn=c.role_arn, extra_args=extra
        )
        return fetcher.fetch_credentials()

    def load(self) -> DeferredRefreshableCredentials:
        return DeferredRefreshableCredentials(refresh_using=self._fetch, method=self.METHOD)


def role_session(creds: S3Credentials, region: str) -> boto3.session.Session:
    """A boto3 session whose credentials are the role's; one per role and region per process,
    so every provider built for a tick or a run shares one set of temporary credentials."""
    key = (
        creds.role_arn,
        creds.external_id,
        creds.role_session_name,
        creds.duration_seconds,
        creds.sts_endpoint_url,
        region,
    )
    with _lock:
        session = _sessions.get(key)
        if session is None:
            core = botocore.session.get_session()
            # First in the chain: the role, whatever else the environment offers.
            core.get_component("credential_provider").insert_before(
                "env", _AssumedRole(creds, region)
            )
            session = boto3.session.Session(botocore_session=core)
            _sessions[key] = session
        return session
