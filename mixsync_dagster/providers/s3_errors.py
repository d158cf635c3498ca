"""What a botocore error means for a sync: the exception a caller can act on, with a message
that names the connection and what to check, and never a secret."""

from __future__ import annotations

from dataclasses import dataclass, field

from botocore.exceptions import (
    ClientError,
    CredentialRetrievalError,
    HTTPClientError,
    NoCredentialsError,
    PartialCredentialsError,
    SSLError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from mixsync_dagster.config import S3Connection
from mixsync_dagster.errors import AuthError, FileVanished, ProviderError, TransientError
from mixsync_dagster.redaction import redact

AUTH_CODES = frozenset(
    {
        "AccessDenied",
        "AllAccessDisabled",
        "AccountProblem",
        "AuthorizationHeaderMalformed",
        "ExpiredToken",
        "InvalidAccessKeyId",
        "InvalidToken",
        "InvalidSecurity",
        "SignatureDoesNotMatch",
        "TokenRefreshRequired",
    }
)
TRANSIENT_CODES = frozenset(
    {
        "InternalError",
        "RequestTimeout",
        "RequestTimeTooSkewed",
        "ServiceUnavailable",
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "TooManyRequests",
        "TooManyRequestsException",
        "RequestLimitExceeded",
    }
)
NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NoSuchVersion", "NotFound"})


@dataclass(frozen=True)
class ErrorContext:
    """The connection a message is about."""

    connection_id: str
    conn: S3Connection
    max_attempts: int
    secrets: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        creds = self.conn.credentials
        parts = (creds.access_key_id, creds.secret_access_key, creds.session_token) if creds else ()
        values = tuple(
            p.get_secret_value() for p in parts if p is not None and p.get_secret_value()
        )
        object.__setattr__(self, "secrets", values)

    def where(self) -> str:
        """Where the store is, as messages show it (an endpoint or region from the environment
        masked, an endpoint's userinfo always)."""
        return redact(self.conn.endpoint_url or f"AWS S3 region {self.conn.region}")

    def scrub(self, text: str) -> str:
        """Credentials (even written in the file itself) and values read from the environment."""
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return redact(text)


def translate(
    err: Exception, what: str, bucket: str | None, key: str | None, ctx: ErrorContext
) -> ProviderError:
    """The exception a caller can act on, for an error botocore gave up on."""
    who = f"connection '{ctx.connection_id}'"
    where = ctx.where()
    creds = ctx.conn.credentials
    role = creds.role_arn if creds is not None else None
    if isinstance(err, ClientError):
        error = err.response.get("Error", {})
        code = str(error.get("Code", ""))
        meta = err.response.get("ResponseMetadata", {})
        status = meta.get("HTTPStatusCode")
        tries = int(meta.get("RetryAttempts", 0)) + 1
        label = f"{code} (HTTP {status})" if code and code != str(status) else f"HTTP {status}"
        transient = code in TRANSIENT_CODES or status == 429 or (status or 0) >= 500
        if err.operation_name == "AssumeRole" and role is not None:
            if transient:
                return TransientError(
                    f"{who}: STS could not assume role {role} for {what} ({label}); the next "
                    "tick or step retries"
                )
            return AuthError(
                f"{who}: STS refused to let the default AWS credential chain assume role "
                f"{role} ({label}) for {what}. Check the role's trust policy (it "
                "must trust the identity mixsync runs as, with sts:ExternalId equal to the "
                "connection's external_id), and duration_seconds against the role's "
                "maximum session duration"
            )
        if code in AUTH_CODES or status in (401, 403):
            on = f"bucket '{bucket}'" if bucket else where
            return AuthError(
                f"{who}: S3 refused the request {what} with {label}. Check the connection's "
                f"access_key_id / secret_access_key (or the default AWS credential chain when "
                f"none are set), region '{ctx.conn.region}', endpoint_url "
                f"({where}), and that the bucket policy / IAM policy "
                f"allows this on {on}"
            )
        if code == "NoSuchBucket" or (status == 404 and key is None):
            return ProviderError(
                f"{who}: bucket '{bucket}' does not exist at {where} ({what}). Check the "
                "sync's source_path and the connection's region / endpoint_url"
            )
        if key is not None and (code in NOT_FOUND_CODES or status == 404):
            return FileVanished(f"s3://{bucket}/{key} was removed after it was listed")
        if code in ("PermanentRedirect", "301") or status == 301:
            region = meta.get("HTTPHeaders", {}).get("x-amz-bucket-region", "another region")
            return ProviderError(
                f"{who}: bucket '{bucket}' is in {region}, not '{ctx.conn.region}' ({what}). "
                "Set the connection's region to the bucket's region"
            )
        if transient:
            return TransientError(
                f"{who}: S3 {what} failed with {label} after {tries} attempt(s) at {where}; "
                "the store is throttling or unavailable, the next tick or step retries"
            )
        message = ctx.scrub(str(error.get("Message", "")))
        return ProviderError(f"{who}: S3 {what} failed with {label}: {message}")
    if isinstance(err, NoCredentialsError | PartialCredentialsError | CredentialRetrievalError):
        if role is not None:
            return AuthError(
                f"{who}: no usable AWS credentials to assume role {role} for "
                f"{what} ({type(err).__name__}). The role is assumed with the default AWS "
                "credential chain: give this process one (AWS_ACCESS_KEY_ID / AWS_PROFILE "
                "/ an instance or pod role)"
            )
        return AuthError(
            f"{who}: no usable AWS credentials for {what} ({type(err).__name__}). Set "
            "credentials on the connection or configure the default AWS credential chain "
            "(AWS_ACCESS_KEY_ID / AWS_PROFILE / an instance role)"
        )
    if isinstance(err, SSLError):
        return ProviderError(
            f"{who}: TLS to {where} failed for {what}: {ctx.scrub(str(err))}. Check "
            "endpoint_url, use_ssl and verify_ssl"
        )
    if isinstance(err, BotoConnectionError | HTTPClientError):
        return TransientError(
            f"{who}: cannot reach S3 at {where} for {what} after {ctx.max_attempts} "
            f"attempt(s): "
            f"{type(err).__name__}: {ctx.scrub(str(err))}"
        )
    return ProviderError(f"{who}: S3 {what} failed: {type(err).__name__}: {ctx.scrub(str(err))}")
