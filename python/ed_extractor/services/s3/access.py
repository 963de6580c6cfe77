"""S3Access: endpoint, region, credentials; ``s3://`` URLs turned into signed httpx requests.

Credentials come from botocore's standard chain (environment, shared files, profile, container and
instance roles); requests are signed with SigV4 (``signing``) and sent by the shared httpx client,
so that the body streams into the project's own sink. Errors are S3's own (``NoSuchKey``,
``AccessDenied``). botocore is imported only once an ``s3://`` source is met.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final
from urllib.parse import quote, urlencode

import httpx

from ed_extractor.errors import SourceError, TransferError
from ed_extractor.http import status_error, status_meaning
from ed_extractor.services.s3.location import S3Location, parse_s3_url

if TYPE_CHECKING:
    from botocore.session import Session

    from ed_extractor.services.s3.objects import S3Object

DEFAULT_REGION: Final = "us-east-1"
_DNS_BUCKET: Final = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
_ERROR_CODE: Final = re.compile(rb"<Code>([^<]{1,100})</Code>")
_ERROR_MESSAGE: Final = re.compile(rb"<Message>([^<]{1,300})</Message>")
_STATUS_CODES: Final = {  # what S3 means by a bare status (HEAD answers carry no body)
    403: "AccessDenied",
    404: "NoSuchKey or NoSuchBucket",
    412: "PreconditionFailed",
}


class S3Error(TransferError):
    """S3 refused a request; ``code`` is S3's error code (``NoSuchKey``, ``AccessDenied``...)."""

    def __init__(self, url: str, code: str, message: str, status_code: int | None) -> None:
        super().__init__(url, message, status_code=status_code)
        self.code = code


class MissingCredentialsError(SourceError):
    """No credentials were found in the AWS chain and anonymous access is off."""


@dataclass(frozen=True)
class S3Config:
    """Where S3 is and how to address it: a custom endpoint means path-style addressing."""

    endpoint_url: str | None = None
    region: str | None = None
    anonymous: bool = False
    profile: str | None = None


class S3Access:
    """Turns ``s3://`` URLs into signed HTTP requests: one endpoint, one set of credentials.

    It also carries, from the probe to the download of the same run, what the probe's HEAD
    learnt about each object (``remember`` / ``recall``), so that no HEAD is sent twice.
    """

    def __init__(self, config: S3Config | None = None) -> None:
        self.config = config or S3Config()
        self._lock = threading.Lock()
        self._session: Session | None = None
        self._auth: httpx.Auth | None = None
        self._described: dict[str, S3Object] = {}

    def _botocore_session(self) -> Session:
        if self._session is None:
            from botocore.session import Session

            self._session = Session(profile=self.config.profile)
        return self._session

    @property
    def endpoint(self) -> str:
        """The endpoint requests go to, for messages."""
        return self.config.endpoint_url or f"AWS S3 ({self.region})"

    @property
    def region(self) -> str:
        """The signing region: the setting, else the AWS configuration, else us-east-1."""
        if self.config.region:
            return self.config.region
        configured = self._botocore_session().get_config_variable("region")
        return str(configured) if configured else DEFAULT_REGION

    def object_url(self, location: S3Location, **query: str | int) -> str:
        """The HTTP URL of the object: path-style at a custom endpoint, else virtual-hosted AWS."""
        key = quote(location.key, safe="/")
        suffix = f"?{urlencode(query)}" if query else ""
        if self.config.endpoint_url:
            base = self.config.endpoint_url.rstrip("/")
            return f"{base}/{location.bucket}/{key}{suffix}"
        host = f"s3.{self.region}.amazonaws.com"
        if _DNS_BUCKET.match(location.bucket):
            return f"https://{location.bucket}.{host}/{key}{suffix}"
        return f"https://{host}/{location.bucket}/{key}{suffix}"

    def auth(self, url: str) -> httpx.Auth | None:
        """The signer for requests about ``url`` (None when anonymous); resolved once per run.

        Raises MissingCredentialsError when the AWS chain has no credentials.
        """
        if self.config.anonymous:
            return None
        from botocore.exceptions import BotoCoreError

        from ed_extractor.services.s3.signing import SigV4

        with self._lock:
            if self._auth is None:
                try:
                    credentials = self._botocore_session().get_credentials()
                except BotoCoreError as exc:
                    raise MissingCredentialsError(
                        url, f"cannot load AWS credentials: {exc}"
                    ) from exc
                if credentials is None:
                    raise MissingCredentialsError(
                        url,
                        "no AWS credentials found (set AWS_ACCESS_KEY_ID and "
                        "AWS_SECRET_ACCESS_KEY, AWS_PROFILE or a shared credentials file; "
                        "or ED_EXTRACTOR_S3_ANONYMOUS=1 for a public bucket)",
                    )
                self._auth = SigV4(credentials.get_frozen_credentials(), self.region)
            return self._auth

    def remember(self, obj: S3Object) -> None:
        """Keep what a HEAD just learnt about ``obj.url`` for its next ``recall``."""
        with self._lock:
            self._described[obj.url] = obj

    def recall(self, url: str) -> S3Object | None:
        """What the last HEAD of ``url`` learnt, handed out once (a later recall gets None).

        Once is enough: the download that follows the probe uses it, and a download that starts
        over (the object was replaced) must ask S3 again.
        """
        with self._lock:
            return self._described.pop(url, None)

    def request(
        self,
        client: httpx.Client,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        **query: str | int,
    ) -> httpx.Request:
        """A signed-on-send request for the object of the ``s3://`` ``url``."""
        target = self.object_url(parse_s3_url(url), **query)
        return client.build_request(
            method, target, headers={"Accept-Encoding": "identity", **(headers or {})}
        )

    def send(
        self, client: httpx.Client, request: httpx.Request, *, stream: bool = False
    ) -> httpx.Response:
        """Send ``request`` signed (redirects are not followed: S3 does not redirect a GET)."""
        auth = self.auth(str(request.url))
        return client.send(request, auth=auth, stream=stream, follow_redirects=False)


def s3_error(url: str, response: httpx.Response, what: str, body: bytes = b"") -> TransferError:
    """The error for an S3 error response: its code and message, or what the status means.

    It reads ``not found: NoSuchKey: ... (HTTP 404)``: what the status says about the object
    where it says something (``status_meaning``), else which request (``what``) was refused.
    """
    status = response.status_code
    prefix = status_meaning(status) or what
    code_match = _ERROR_CODE.search(body)
    if code_match is None:
        code = _STATUS_CODES.get(status)
        if code is None:
            return status_error(url, response, what)
        return S3Error(url, code, f"{prefix}: {code} (HTTP {status})", status)
    code = code_match.group(1).decode("utf-8", "replace")
    message_match = _ERROR_MESSAGE.search(body)
    message = message_match.group(1).decode("utf-8", "replace") if message_match else ""
    text = f"{prefix}: {code}: {message}" if message else f"{prefix}: {code}"
    return S3Error(url, code, f"{text} (HTTP {status})", status)
