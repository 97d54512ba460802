"""The client of the IE Docker API (`ieapi`), built on the same contract models as the server.

Every answer is classified once, here: transport failures, timeouts and 5xx are temporary;
4xx are permanent, with the IE's error code, message and field carried along so a condition
can say exactly what to fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

import requests
from pydantic import BaseModel, ValidationError

from hooks.errors import PeerError, PermanentError, TemporaryError
from hooks.http import Deadline, Suspects, pooled_session, send
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

M = TypeVar("M", bound=BaseModel)

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

    # ------------------------------------------------------------------ calls

    def ensure(self, ep: Endpoint, name: str, spec: ContainerSpec,
               deadline: Deadline) -> ContainerStatus:
        """PUT: create, replace or keep the container (idempotent by contract)."""
        response = self._call("PUT", ep, _container_path(name), deadline,
                              what=f"ensure {name} on IE {ep.ie!r}", json=dump_for_ie(spec))
        return self._parse(response, ContainerStatus, ep, "ensure")

    def get(self, ep: Endpoint, name: str, deadline: Deadline) -> ContainerStatus | None:
        """GET: the container's status, or None when the IE has no such container."""
        what = f"get {name} on IE {ep.ie!r}"
        response = self._call("GET", ep, _container_path(name), deadline, what=what,
                              allow=(404,))
        if response.status_code == 404:
            with response:
                if _error_code(response) is ErrorCode.NOT_FOUND:
                    return None  # the IE API says so; a bare 404 may be a wrong URL
                raise _error(response, what)
        return self._parse(response, ContainerStatus, ep, "get")

    def delete(self, ep: Endpoint, name: str, deadline: Deadline) -> DeleteResult:
        """DELETE: absent counts as success (`deleted: false`)."""
        response = self._call("DELETE", ep, _container_path(name), deadline,
                              what=f"delete {name} on IE {ep.ie!r}")
        return self._parse(response, DeleteResult, ep, "delete")

    def list(self, ep: Endpoint, deadline: Deadline) -> ContainerList:
        response = self._call("GET", ep, "/v1/containers", deadline,
                              what=f"list containers on IE {ep.ie!r}")
        return self._parse(response, ContainerList, ep, "list")

    def info(self, ep: Endpoint, deadline: Deadline) -> IEInfo:
        response = self._call("GET", ep, "/v1/info", deadline, what=f"info of IE {ep.ie!r}")
        return self._parse(response, IEInfo, ep, "info")

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

    def _call(self, method: str, ep: Endpoint, path: str, deadline: Deadline, *, what: str,
              allow: tuple[int, ...] = (), **kwargs: Any) -> requests.Response:
        s = self.settings
        response = send(self.session, method, ep.url.rstrip("/") + path, deadline=deadline,
                        connect_timeout=s.ie_connect_timeout_seconds,
                        read_timeout=s.ie_read_timeout_seconds, retries=s.ie_retries,
                        unreachable=Reason.IE_UNREACHABLE, tls_failure=Reason.IE_TLS_ERROR,
                        retry_statuses=(503,), what=what, headers=self._headers(ep),
                        verify=self._verify(ep), suspects=self.suspects, **kwargs)
        if response.status_code < 400 or response.status_code in allow:
            return response
        with response:
            raise _error(response, what)

    @staticmethod
    def _parse(response: requests.Response, model: type[M], ep: Endpoint, what: str) -> M:
        with response:
            try:
                return model.model_validate_json(response.content)
            except ValidationError as exc:
                raise TemporaryError(
                    Reason.IE_ERROR, f"{what} on IE {ep.ie!r}: unexpected answer "
                    f"(HTTP {response.status_code}, not a {model.__name__})") from exc


def _container_path(name: str) -> str:
    return "/v1/containers/" + quote(name, safe="")


def _error_code(response: requests.Response) -> ErrorCode | None:
    try:
        return ErrorBody.model_validate_json(response.content).error.code
    except ValidationError:
        return None


def _error(response: requests.Response, what: str) -> PeerError:
    """Classify an error answer, using the IE's ErrorBody when it sent one."""
    status = response.status_code
    code: ErrorCode | None = None
    message = response.reason or ""
    field: str | None = None
    try:
        detail = ErrorBody.model_validate_json(response.content).error
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
