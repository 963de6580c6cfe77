"""SigV4: an httpx.Auth that signs S3 requests with botocore's ``S3SigV4Auth``."""

from __future__ import annotations

from collections.abc import Generator
from typing import Final

import httpx
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials, ReadOnlyCredentials

from ed_extractor.services.s3.objects import PAYLOAD_HASH

# Headers that the signature covers besides host and x-amz-*: the ones that select the bytes.
_SIGNED: Final = frozenset({"range", "if-match", "if-none-match"})
_DECLARED: Final = "ed_extractor_payload_hash"


class _DeclaredPayloadAuth(S3SigV4Auth):
    """botocore's S3 signer, but the payload hash is the one the request declares, if any.

    The body is not handed to botocore (it may stream); without a declared hash the payload is
    signed as empty, which is right for GET, HEAD and DELETE.
    """

    def payload(self, request: AWSRequest) -> str:
        declared = request.context.get(_DECLARED)
        return str(declared) if declared else str(super().payload(request))


class SigV4(httpx.Auth):
    """Signs each request with AWS Signature Version 4 for S3 (the payload of a GET is empty)."""

    def __init__(self, credentials: ReadOnlyCredentials, region: str) -> None:
        self._signer = _DeclaredPayloadAuth(
            Credentials(
                credentials.access_key or "", credentials.secret_key or "", credentials.token
            ),
            "s3",
            region,
        )

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Add Authorization, X-Amz-Date and X-Amz-Content-SHA256 to ``request``.

        A request with a body sets ``x-amz-content-sha256`` (PAYLOAD_HASH) first: the body's hex
        SHA-256, or ``UNSIGNED-PAYLOAD``; the signature then covers that value.
        """
        signed = {
            name: value
            for name, value in request.headers.items()
            if name.lower() in _SIGNED or name.lower().startswith("x-amz-")
        }
        aws = AWSRequest(method=request.method, url=str(request.url), headers=signed)
        aws.context[_DECLARED] = request.headers.get(PAYLOAD_HASH)
        self._signer.add_auth(aws)
        for name, value in aws.headers.items():
            if name.lower() == "authorization" or name.lower().startswith("x-amz-"):
                request.headers[name] = value
        yield request
