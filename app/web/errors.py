"""One error shape for every failure: {"error": {"code", "message"}} with the right status.

The service refuses with domain errors (app.core.errors); `http_error` is the one place that turns
them into an HTTP status and headers, for the JSON API (the handler below) and for the pages (which
render their own page with that status). An unreachable database or object store is a 503 with
Retry-After; anything else a plain 500 that leaks nothing.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from app.core.errors import (
    Conflict,
    ErrorCode,
    Invalid,
    Malformed,
    NotFound,
    Refused,
    Throttled,
    TimedOut,
    TooLarge,
    Unavailable,
    Unsupported,
)
from app.core.storage import StorageUnavailable
from app.web.metrics import CLIENT_CLOSED, Metrics

log = logging.getLogger("vivify.api")

RETRY_AFTER_UNAVAILABLE_S = 5


class ApiError(Exception):
    """A refusal in HTTP terms: what the pages' renderers (app.web.rendering) take."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


# The one mapping of a kind of refusal to its HTTP status. Every subclass of Refused is listed (a test
# checks it); a bare Refused has no kind and reads as a bad request.
STATUS: dict[type[Refused], int] = {
    Refused: 400,
    Malformed: 400,
    NotFound: 404,
    TimedOut: 408,
    Conflict: 409,
    TooLarge: 413,
    Unsupported: 415,
    Invalid: 422,
    Throttled: 429,
    Unavailable: 503,
}


def status_of(exc: Refused) -> int:
    return next(STATUS[kind] for kind in type(exc).__mro__ if kind in STATUS)


def http_error(exc: Refused) -> ApiError:
    """A domain error as an HTTP answer: its status, code and message, and Retry-After when it has one."""
    headers = {} if exc.retry_after_s is None else {"Retry-After": str(exc.retry_after_s)}
    return ApiError(status_of(exc), exc.code.value, exc.message, headers)


def rejected(metrics: Metrics, exc: Refused) -> ApiError:
    """A refused upload (a new job, another animation, a photo check): counted, then answered."""
    metrics.uploads_rejected.labels(exc.code.value).inc()
    return http_error(exc)


class EarlyResponse(Exception):
    """Raised by a dependency that already has the whole answer, e.g. the not-found page for a page
    about a job the visitor does not have (a page never answers with JSON)."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def _json(error: ApiError) -> JSONResponse:
    return error_response(error.status, error.code, error.message, error.headers)


_HTTP_CODES = {
    400: ErrorCode.BAD_REQUEST,
    401: ErrorCode.UNAUTHORIZED,
    403: ErrorCode.FORBIDDEN,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    406: ErrorCode.NOT_ACCEPTABLE,
    409: ErrorCode.CONFLICT,
    413: ErrorCode.TOO_LARGE,
    415: ErrorCode.UNSUPPORTED_MEDIA_TYPE,
    416: ErrorCode.RANGE_NOT_SATISFIABLE,
    422: ErrorCode.INVALID_FIELD,
    429: ErrorCode.RATE_LIMITED,
}


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path"))
        parts.append(f"{where or 'request'}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "Invalid request."


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(Refused)
    async def _refused(_: Request, exc: Refused) -> JSONResponse:
        return _json(http_error(exc))

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _json(exc)

    @app.exception_handler(EarlyResponse)
    async def _early(_: Request, exc: EarlyResponse) -> Response:
        return exc.response

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, ErrorCode.INVALID_FIELD.value, _validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, ErrorCode.ERROR).value
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        return error_response(exc.status_code, code, message, getattr(exc, "headers", None))

    @app.exception_handler(ClientDisconnect)
    async def _gone(request: Request, _: ClientDisconnect) -> Response:
        log.info("client went away during %s %s", request.method, request.url.path)
        return Response(status_code=CLIENT_CLOSED)

    @app.exception_handler(StorageUnavailable)
    async def _storage(_: Request, exc: StorageUnavailable) -> JSONResponse:
        log.warning("object store unavailable: %s", type(exc).__name__)
        return _json(
            http_error(
                Unavailable(
                    ErrorCode.STORAGE_UNAVAILABLE,
                    "The object store cannot be reached right now; try again shortly.",
                    retry_after_s=RETRY_AFTER_UNAVAILABLE_S,
                )
            )
        )

    async def _database(_: Request, exc: Exception) -> JSONResponse:
        log.warning("database unavailable: %s", type(exc).__name__)
        return _json(
            http_error(
                Unavailable(
                    ErrorCode.DATABASE_UNAVAILABLE,
                    "The database cannot be reached right now; try again shortly.",
                    retry_after_s=RETRY_AFTER_UNAVAILABLE_S,
                )
            )
        )

    app.add_exception_handler(OperationalError, _database)
    app.add_exception_handler(PoolTimeout, _database)

    @app.exception_handler(DBAPIError)
    async def _dbapi(request: Request, exc: DBAPIError) -> JSONResponse:
        if exc.connection_invalidated:
            return await _database(request, exc)
        log.exception("database error on %s %s", request.method, request.url.path)
        return error_response(500, ErrorCode.INTERNAL.value, "Something went wrong on our side.")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, ErrorCode.INTERNAL.value, "Something went wrong on our side.")
