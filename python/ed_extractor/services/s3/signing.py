"""SigV4: an httpx.Auth that signs S3 requests with botocore's ``S3SigV4Auth``."""

from __future__ import annotations

from collections.abc import Generator
from typing import Final

import httpx
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials, ReadOnlyCredentials

# Headers that the signature covers besides host and x-amz-*: the ones that select the bytes.
_SIGNED: Final = frozenset({"range", "if-match", "if-none-match"})


class SigV4(httpx.Auth):
    """Signs each request with AWS Signature Version 4 for S3 (the payload of a GET is empty)."""

    def __init__(self, credentials: ReadOnlyCredentials, region: str) -> None:
        self._signer = S3SigV4Auth(
            Credentials(
                credentials.access_key or "", credentials.secret_key or "", credentials.token
            ),
            "s3",
            region,
        )

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Add Authorization, X-Amz-Date and X-Amz-Content-SHA256 to ``request``."""
        signed = {
            name: value
            for name, value in request.headers.items()
            if name.lower() in _SIGNED or name.lower().startswith("x-amz-")
        }
        aws = AWSRequest(method=request.method, url=str(request.url), headers=signed)
        self._signer.add_auth(aws)
        for name, value in aws.headers.items():
            if name.lower() == "authorization" or name.lower().startswith("x-amz-"):
                request.headers[name] = value
        yield request
