"""Errors the IE API answers with, and the one place where Docker's failures become them.

Each error knows its HTTP status, its contract `ErrorCode`, the request field it is about (when
there is one) and whether it is *temporary* (retrying the same request later may succeed: the
daemon is down or overloaded) or *permanent* (only a changed request helps), like kopf's
TemporaryError/PermanentError. The hooks choose their backoff from that distinction.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

import docker.errors
import requests

from ieapi.contract import ErrorBody, ErrorCode


class IEApiError(Exception):
    """Base of every foreseeable failure; rendered as a contract `ErrorBody`."""

    http_status = 500
    code = ErrorCode.INTERNAL
    temporary = False

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def body(self) -> ErrorBody:
        return ErrorBody.of(self.code, self.message, self.field)


class InvalidRequestError(IEApiError):
    http_status = 400
    code = ErrorCode.INVALID_REQUEST


class UnauthorizedError(IEApiError):
    http_status = 401
    code = ErrorCode.UNAUTHORIZED


class PrivilegedNotAllowedError(IEApiError):
    http_status = 403
    code = ErrorCode.PRIVILEGED_NOT_ALLOWED


class NotFoundError(IEApiError):
    http_status = 404
    code = ErrorCode.NOT_FOUND


class ConflictError(IEApiError):
    http_status = 409
    code = ErrorCode.CONFLICT


class PortInUseError(IEApiError):
    http_status = 409
    code = ErrorCode.PORT_IN_USE


class TooManyRequestsError(IEApiError):
    """A bounded resource (e.g. logs streams) is in use; retry later."""

    http_status = 429
    code = ErrorCode.TOO_MANY_REQUESTS
    temporary = True


class DockerError(IEApiError):
    """Docker refused for a reason outside the request (its own 5xx)."""

    http_status = 502
    code = ErrorCode.DOCKER_ERROR
    temporary = True


class DockerUnavailableError(IEApiError):
    """The daemon cannot be reached or did not answer in time."""

    http_status = 503
    code = ErrorCode.DOCKER_UNAVAILABLE
    temporary = True


_PORT_IN_USE_MARKERS = ("port is already allocated", "address already in use")


def is_port_in_use(error: docker.errors.APIError) -> bool:
    text = (error.explanation or str(error)).lower()
    return any(marker in text for marker in _PORT_IN_USE_MARKERS)


_HOST_PORT = re.compile(r"(\d{1,3}(?:\.\d{1,3}){3}|\[[0-9a-fA-F:]*\]|::):(\d{1,5})")


def stable_port_message(message: str) -> str:
    """Docker's port-conflict text names the endpoint and its random id, which change on every
    attempt; a hook status built from it would change on every retry. Keep what a person needs:
    the host address and port, and why."""
    found = _HOST_PORT.search(message)
    reason = message.rsplit(": ", 1)[-1].strip() or "port is already allocated"
    if found is None:
        return f"a published port is already in use on the IE: {reason}"
    return f"host port {found.group(2)} ({found.group(1)}) is already in use on the IE: {reason}"


def from_api_error(error: docker.errors.APIError) -> IEApiError:
    """Map an answer of the Docker Engine to the IE API error that explains it."""
    message = str(error.explanation or error)
    if "invalid reference format" in message:
        return InvalidRequestError(f"image: {message}", field="image")
    if is_port_in_use(error):
        return PortInUseError(stable_port_message(message), field="ports")
    status = error.status_code or 500
    if status == 404:
        return NotFoundError(message)
    if status == 409:
        return ConflictError(message)
    if 400 <= status < 500:
        return InvalidRequestError(message)
    return DockerError(message)


@contextlib.contextmanager
def docker_errors() -> Iterator[None]:
    """Translate docker SDK and transport exceptions raised inside the block."""
    try:
        yield
    except IEApiError:
        raise
    except docker.errors.APIError as exc:
        raise from_api_error(exc) from exc
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise DockerUnavailableError(f"Docker Engine unreachable: {exc}") from exc
    except docker.errors.DockerException as exc:
        # Raised by the SDK before any request got an answer (e.g. version negotiation).
        raise DockerUnavailableError(f"Docker Engine unusable: {exc}") from exc
