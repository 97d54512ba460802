"""The client of the IE Docker API (`ieapi`), built on the same contract models as the server.

Two transports carry the same contract, chosen by the scheme of the DIE's `spec.api.url`:
`http(s)://` is the REST API (a pooled `requests.Session`), `nats://` and `tls://` the
request-reply subjects the NATS agent serves (`hooks.ienats`, `ieapi.natswire`). Every answer
is classified once, here, whatever carried it: transport failures, timeouts and 5xx are
temporary; 4xx are permanent, with the IE's error code, message and field carried along so a
condition can say exactly what to fix.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

import requests
from pydantic import BaseModel, ValidationError

from hooks import metrics
from hooks.errors import PeerError, PermanentError, TemporaryError
from hooks.http import Deadline, Suspects, pooled_session, send
from hooks.ienats import NatsRequester
from hooks.reasons import Reason
from hooks.resources import DIE, Placement
from hooks.settings import Settings
from hooks.tokens import TokenDir
from ieapi.contract import (
    ContainerList,
    ContainerSpec,
    ContainerStatus,
    DeleteResult,
    ErrorBody,
    ErrorCode,
    IEInfo,
    dump_for_ie,
)
from ieapi.natsauth import NatsIdentity
from ieapi.natswire import Answer, Operation, is_nats_url, request_headers, subject

M = TypeVar("M", bound=BaseModel)
_NO_ANSWER = "no answer within the read timeout"

# Which reason a 4xx answer becomes, by the IE's error code.
_CODE_REASONS: dict[ErrorCode, Reason] = {
    ErrorCode.INVALID_REQUEST: Reason.INVALID_SPEC,
    ErrorCode.PAYLOAD_TOO_LARGE: Reason.INVALID_SPEC,
    ErrorCode.UNAUTHORIZED: Reason.IE_UNAUTHORIZED,
    ErrorCode.PRIVILEGED_NOT_ALLOWED: Reason.PRIVILEGED_NOT_ALLOWED,
    ErrorCode.PORT_IN_USE: Reason.PORT_IN_USE,
    ErrorCode.CONFLICT: Reason.NAME_CONFLICT,
}
_STATUS_REASONS: dict[int, Reason] = {
    400: Reason.INVALID_SPEC, 401: Reason.IE_UNAUTHORIZED, 409: Reason.NAME_CONFLICT,
    413: Reason.INVALID_SPEC, 422: Reason.INVALID_SPEC,
}


@dataclass(frozen=True)
class Endpoint:
    """How to reach one IE API: from its DIE, or from a placement recorded in status (which
    is how a container is still deleted after its DIE is gone)."""

    ie: str
    url: str
    token_key: str
    insecure_skip_tls_verify: bool = False

    @classmethod
    def of_die(cls, die: DIE) -> Endpoint:
        return cls(ie=die.metadata.name, url=die.spec.api.url,
                   token_key=die.token_key,
                   insecure_skip_tls_verify=die.spec.api.insecure_skip_tls_verify)

    @classmethod
    def of_placement(cls, p: Placement) -> Endpoint:
        return cls(ie=p.ie, url=p.api_url, token_key=p.token_key or p.ie,
                   insecure_skip_tls_verify=p.insecure_skip_tls_verify)


class IEClient:
    """One per process: one pooled Session for all IEs, tokens from the token directory."""

    def __init__(self, settings: Settings, session: requests.Session | None = None,
                 tokens: TokenDir | None = None) -> None:
        self.settings = settings
        self.session = session or pooled_session(settings.ie_pool_hosts,
                                                 settings.ie_pool_per_host)
        self.tokens = tokens or TokenDir(settings.ie_token_dir)
        # IEs that stopped answering: one call retries them, concurrent ones fail at once.
        self.suspects = Suspects()
        self.nats = NatsRequester(
            NatsIdentity(user=settings.nats_user, password_file=settings.nats_password_file,
                         nkey_seed_file=settings.nats_nkey_seed_file,
                         creds_file=settings.nats_creds_file, ca_file=settings.nats_ca_bundle),
            connect_timeout=settings.ie_connect_timeout_seconds)

    # ------------------------------------------------------------------ calls

    def ensure(self, ep: Endpoint, name: str, spec: ContainerSpec,
               deadline: Deadline) -> ContainerStatus:
        """PUT: create, replace or keep the container (idempotent by contract)."""
        answer = self._call(Operation.ENSURE, ep, name, deadline,
                            what=f"ensure {name} on IE {ep.ie!r}", body=dump_for_ie(spec))
        return _parse(answer, ContainerStatus, ep, "ensure")

    def get(self, ep: Endpoint, name: str, deadline: Deadline) -> ContainerStatus | None:
        """GET: the container's status, or None when the IE has no such container."""
        what = f"get {name} on IE {ep.ie!r}"
        answer = self._call(Operation.GET, ep, name, deadline, what=what, allow=(404,))
        if answer.status == 404:
            if _error_code(answer) is ErrorCode.NOT_FOUND:
                return None  # the IE API says so; a bare 404 may be a wrong URL
            raise _error(answer, what)
        return _parse(answer, ContainerStatus, ep, "get")

    def delete(self, ep: Endpoint, name: str, deadline: Deadline) -> DeleteResult:
        """DELETE: absent counts as success (`deleted: false`)."""
        answer = self._call(Operation.DELETE, ep, name, deadline,
                            what=f"delete {name} on IE {ep.ie!r}")
        return _parse(answer, DeleteResult, ep, "delete")

    def list(self, ep: Endpoint, deadline: Deadline) -> ContainerList:
        answer = self._call(Operation.LIST, ep, None, deadline,
                            what=f"list containers on IE {ep.ie!r}")
        return _parse(answer, ContainerList, ep, "list")

    def info(self, ep: Endpoint, deadline: Deadline) -> IEInfo:
        answer = self._call(Operation.INFO, ep, None, deadline, what=f"info of IE {ep.ie!r}")
        return _parse(answer, IEInfo, ep, "info")

    # ------------------------------------------------------------------ plumbing

    def _headers(self, ep: Endpoint) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self.tokens.configured:
            token = self.tokens.get(ep.token_key)
            if token is None:
                raise PermanentError(
                    Reason.TOKEN_MISSING,
                    f"IE {ep.ie!r}: no token file {ep.token_key!r} in LLO_IE_TOKEN_DIR")
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def _verify(self, ep: Endpoint) -> bool | str:
        if ep.insecure_skip_tls_verify:
            return False
        return str(self.settings.ie_ca_bundle) if self.settings.ie_ca_bundle else True

    def _call(self, operation: Operation, ep: Endpoint, name: str | None, deadline: Deadline,
              *, what: str, allow: tuple[int, ...] = (),
              body: dict[str, Any] | None = None) -> Answer:
        with metrics.ie_call(ep.ie) as answered:  # counted and timed, whatever the transport
            if is_nats_url(ep.url):
                answer = self._over_nats(operation, ep, name, deadline, what=what, body=body)
            else:
                answer = self._over_http(operation, ep, name, deadline, what=what, body=body)
            answered(answer.status)
        if answer.status < 400 or answer.status in allow:
            return answer
        raise _error(answer, what)

    def _over_http(self, operation: Operation, ep: Endpoint, name: str | None,
                   deadline: Deadline, *, what: str, body: dict[str, Any] | None) -> Answer:
        method, path = _HTTP_ROUTES[operation]
        if name is not None:
            path += "/" + quote(name, safe="")
        s = self.settings
        kwargs: dict[str, Any] = {} if body is None else {"json": body}
        response = send(self.session, method, ep.url.rstrip("/") + path, deadline=deadline,
                        connect_timeout=s.ie_connect_timeout_seconds,
                        read_timeout=s.ie_read_timeout_seconds, retries=s.ie_retries,
                        unreachable=Reason.IE_UNREACHABLE, tls_failure=Reason.IE_TLS_ERROR,
                        retry_statuses=(503,), what=what, headers=self._headers(ep),
                        verify=self._verify(ep), suspects=self.suspects, **kwargs)
        with response:
            return Answer(status=response.status_code, content=response.content,
                          reason=response.reason or "")

    def _over_nats(self, operation: Operation, ep: Endpoint, name: str | None,
                   deadline: Deadline, *, what: str, body: dict[str, Any] | None) -> Answer:
        """One request on the IE's subject (no token: the NATS server authenticates us).
        A timed-out IE is a suspect exactly as over HTTP: while one call retries it, the
        others fail at once instead of each holding a hook thread."""
        s = self.settings
        _, read = deadline.timeouts(s.ie_connect_timeout_seconds, s.ie_read_timeout_seconds,
                                    what)
        origin = f"{ep.url}#{ep.ie}"
        known, probe = self.suspects.admit(origin)
        if known is not None:
            raise TemporaryError(Reason.IE_UNREACHABLE, f"{what}: {known}")
        answered, failure = False, None
        data = json.dumps(body, separators=(",", ":")).encode() if body is not None else b""
        try:
            answer = self.nats.request(
                ep.url, subject(s.nats_subject_prefix, ep.ie, operation),
                request_headers(operation, name), data, timeout=read, what=what)
            answered = True
            return answer
        except TemporaryError as exc:
            if exc.message.endswith(_NO_ANSWER):
                failure = _NO_ANSWER
            raise
        finally:
            self.suspects.done(origin, probe=probe, answered=answered, failure=failure)

# The REST route of each operation (the container name, quoted, is appended when it has one).
_HTTP_ROUTES: dict[Operation, tuple[str, str]] = {
    Operation.INFO: ("GET", "/v1/info"),
    Operation.LIST: ("GET", "/v1/containers"),
    Operation.ENSURE: ("PUT", "/v1/containers"),
    Operation.GET: ("GET", "/v1/containers"),
    Operation.DELETE: ("DELETE", "/v1/containers"),
}


def _parse(answer: Answer, model: type[M], ep: Endpoint, what: str) -> M:
    try:
        return model.model_validate_json(answer.content)
    except ValidationError as exc:
        raise TemporaryError(
            Reason.IE_ERROR, f"{what} on IE {ep.ie!r}: unexpected answer "
            f"(HTTP {answer.status}, not a {model.__name__})") from exc


def _error_code(answer: Answer) -> ErrorCode | None:
    try:
        return ErrorBody.model_validate_json(answer.content).error.code
    except ValidationError:
        return None


def _error(answer: Answer, what: str) -> PeerError:
    """Classify an error answer, using the IE's ErrorBody when it sent one."""
    status = answer.status
    code: ErrorCode | None = None
    message = answer.reason
    field: str | None = None
    try:
        detail = ErrorBody.model_validate_json(answer.content).error
        code, message, field = detail.code, detail.message, detail.field
    except ValidationError:
        pass
    text = f"{what}: HTTP {status}" + (f" {code.value}" if code else "") + \
        (f": {message}" if message else "") + (f" (field {field})" if field else "")
    if status >= 500 or status == 429:
        return TemporaryError(Reason.IE_ERROR, text, code=code.value if code else None,
                              field=field, http_status=status)
    reason = (_CODE_REASONS.get(code) if code else None) or _STATUS_REASONS.get(status) \
        or Reason.IE_REJECTED
    return PermanentError(reason, text, code=code.value if code else None, field=field,
                          http_status=status)
