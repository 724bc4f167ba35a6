"""Every error the registry answers with, declared once, and the OCI JSON envelope.

Handlers raise :class:`RegistryError` (usually through one of the codes below); one exception
handler in ``app.py`` turns it into ``{"errors": [{"code", "message", "detail"}]}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.responses import Response

from registry import jsonbody


@dataclass(frozen=True)
class ErrorCode:
    code: str
    message: str
    status: int

    def __call__(
        self,
        detail: Any = None,
        *,
        message: str | None = None,
        headers: dict[str, str] | None = None,
        status: int | None = None,
    ) -> RegistryError:
        return RegistryError(self, detail, message=message, headers=headers, status=status)


class RegistryError(Exception):
    def __init__(
        self,
        code: ErrorCode,
        detail: Any = None,
        *,
        message: str | None = None,
        headers: dict[str, str] | None = None,
        status: int | None = None,
    ) -> None:
        self.code = code
        self.detail = detail
        self.message = message or code.message
        self.headers = headers or {}
        self.status = status or code.status
        super().__init__(f"{code.code}: {self.message}")

    def to_response(self, *, head: bool = False) -> Response:
        entry: dict[str, Any] = {"code": self.code.code, "message": self.message}
        if self.detail is not None:
            entry["detail"] = self.detail
        body = jsonbody.dumps({"errors": [entry]})
        headers = {"Docker-Distribution-API-Version": "registry/2.0", **self.headers}
        if head:
            # HEAD answers carry no body but must still say how long it would have been.
            headers["Content-Length"] = str(len(body))
            return Response(b"", self.status, headers, media_type="application/json")
        return Response(body, self.status, headers, media_type="application/json")


# The OCI distribution-spec codes (status as the spec and Distribution answer them) ...
BLOB_UNKNOWN = ErrorCode("BLOB_UNKNOWN", "blob unknown to registry", 404)
BLOB_UPLOAD_INVALID = ErrorCode("BLOB_UPLOAD_INVALID", "blob upload invalid", 400)
BLOB_UPLOAD_UNKNOWN = ErrorCode("BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry", 404)
DIGEST_INVALID = ErrorCode("DIGEST_INVALID", "provided digest did not match uploaded content", 400)
MANIFEST_BLOB_UNKNOWN = ErrorCode(
    "MANIFEST_BLOB_UNKNOWN", "manifest references a manifest or blob unknown to registry", 400
)
MANIFEST_INVALID = ErrorCode("MANIFEST_INVALID", "manifest invalid", 400)
MANIFEST_UNKNOWN = ErrorCode("MANIFEST_UNKNOWN", "manifest unknown to registry", 404)
NAME_INVALID = ErrorCode("NAME_INVALID", "invalid repository name", 400)
NAME_UNKNOWN = ErrorCode("NAME_UNKNOWN", "repository name not known to registry", 404)
SIZE_INVALID = ErrorCode("SIZE_INVALID", "provided length did not match content length", 400)
UNAUTHORIZED = ErrorCode("UNAUTHORIZED", "authentication required", 401)
DENIED = ErrorCode("DENIED", "requested access to the resource is denied", 403)
UNSUPPORTED = ErrorCode("UNSUPPORTED", "the operation is unsupported", 415)
TOOMANYREQUESTS = ErrorCode("TOOMANYREQUESTS", "too many requests", 429)

# ... and the few more that Distribution and clients know.
TAG_INVALID = ErrorCode("TAG_INVALID", "manifest tag did not match URI", 400)
MANIFEST_TOO_LARGE = ErrorCode("MANIFEST_INVALID", "manifest too large", 413)
# 416 for a chunk that does not continue the upload, and for a blob Range past the end.
RANGE_INVALID = ErrorCode("BLOB_UPLOAD_INVALID", "chunk out of order", 416)
RANGE_NOT_SATISFIABLE = ErrorCode("RANGE_NOT_SATISFIABLE", "requested range not satisfiable", 416)
PAGINATION_INVALID = ErrorCode(
    "PAGINATION_NUMBER_INVALID", "invalid number of results requested", 400
)
METHOD_UNKNOWN = ErrorCode("UNSUPPORTED", "the operation is unsupported", 405)
NOT_FOUND = ErrorCode("NOT_FOUND", "resource not found", 404)
NOT_ACCEPTABLE = ErrorCode(
    "MANIFEST_UNKNOWN", "manifest is not available in any of the accepted media types", 404
)
UNAVAILABLE = ErrorCode("UNAVAILABLE", "service unavailable", 503)
INTERNAL = ErrorCode("UNKNOWN", "unknown error", 500)
