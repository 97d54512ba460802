"""The Orion-LD client: sets `serviceComponentStatus` on a ServiceComponent entity, and finds
entities by `idPattern` when the instance label does not say exactly which one.

Orion-LD (experimental mode, docs/design.md §2) answers a PATCH of a missing attribute and a
PATCH of a missing entity both with 404, and a partly applied PATCH with 207. So: PATCH first
(the attribute usually exists); when it was not updated, POST the attribute (append), which only
404s when the entity itself is missing. Both calls are idempotent, so a short retry is safe.
"""

from __future__ import annotations

import logging
import threading
from urllib.parse import quote

import requests

from hooks import metrics
from hooks.errors import PermanentError, TemporaryError
from hooks.http import Deadline, pooled_session, send
from hooks.observations import BrokerOutcome
from hooks.reasons import Reason
from hooks.settings import Settings
from ieapi.secretfile import SecretFile

ATTRIBUTE = "serviceComponentStatus"
SERVICE_COMPONENT = "ServiceComponent"  # the entity type (core context: short name)
QUERY_LIMIT = 5
STATUS_URN_PREFIX = "urn:ngsi-ld:ServiceComponentStatus:"

log = logging.getLogger(__name__)


def status_body(value: str) -> dict[str, dict[str, str]]:
    return {ATTRIBUTE: {"type": "Relationship", "object": STATUS_URN_PREFIX + value}}


class BrokerClient:
    """One per process; thread-safe (no per-call state on the session)."""

    def __init__(self, settings: Settings, session: requests.Session | None = None) -> None:
        self.settings = settings
        self.session = session or pooled_session(pool_hosts=2,
                                                 pool_per_host=settings.threads)
        self._token = SecretFile(settings.broker_token_file) \
            if settings.broker_token_file else None
        self._disabled_logged = False
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.settings.broker_enabled

    def log_disabled_once(self) -> None:
        with self._lock:
            if self._disabled_logged:
                return
            self._disabled_logged = True
        log.info("LLO_BROKER_URL is empty: ServiceComponent status updates are disabled")

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        headers.update(self.settings.broker_headers)
        if self.settings.broker_tenant:
            headers["NGSILD-Tenant"] = self.settings.broker_tenant
        if self._token is not None:
            token = self._token.read()
            if token is None:
                raise PermanentError(Reason.BROKER_REJECTED,
                                     f"broker token file {self._token.path} is missing or empty")
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def _send(self, method: str, url: str, body: object, deadline: Deadline,
              what: str, *, params: dict[str, str] | None = None) -> requests.Response:
        s = self.settings
        verify: bool | str = str(s.broker_ca_bundle) if s.broker_ca_bundle else True
        headers = self._headers()
        if body is None:
            headers.pop("Content-Type")
        with metrics.broker_call() as answered:
            response = send(self.session, method, url, deadline=deadline,
                            connect_timeout=s.broker_connect_timeout_seconds,
                            read_timeout=s.broker_read_timeout_seconds,
                            retries=s.broker_retries, unreachable=Reason.BROKER_UNREACHABLE,
                            tls_failure=Reason.BROKER_UNREACHABLE,
                            retry_statuses=(502, 503, 504), what=what, json=body,
                            params=params, headers=headers, verify=verify)
            answered(response.status_code)
        return response

    def find_entities(self, entity_type: str, pattern: str, deadline: Deadline) -> list[str]:
        """Ids of the entities of `entity_type` whose id matches the NGSI-LD `idPattern` (at
        most QUERY_LIMIT: enough to tell one from several). Raises Temporary/PermanentError."""
        url = f"{self.settings.broker_url}/ngsi-ld/v1/entities"
        params = {"type": entity_type, "idPattern": pattern, "limit": str(QUERY_LIMIT)}
        what = f"broker GET entities type={entity_type} idPattern={pattern}"
        response = self._send("GET", url, None, deadline, what, params=params)
        with response:
            if response.status_code != 200:
                raise _error(response, what)
            try:
                body = response.json()
            except ValueError:
                body = None
        if not isinstance(body, list):
            raise TemporaryError(Reason.BROKER_ERROR, f"{what}: the answer is not an array")
        return [item["id"] for item in body
                if isinstance(item, dict) and isinstance(item.get("id"), str)]

    def set_status(self, entity: str, value: str, deadline: Deadline) -> BrokerOutcome:
        """Make the broker hold `value`. Raises TemporaryError / PermanentError."""
        url = f"{self.settings.broker_url}/ngsi-ld/v1/entities/{quote(entity, safe=':')}/attrs"
        body = status_body(value)
        what = f"broker PATCH {entity} {ATTRIBUTE}={value}"
        response = self._send("PATCH", url, body, deadline, what)
        with response:
            if response.status_code in (200, 204):
                return BrokerOutcome.ACCEPTED
            if response.status_code == 207 and not _not_updated(response):
                return BrokerOutcome.ACCEPTED
            if response.status_code not in (207, 404):
                raise _error(response, what)
        # The attribute (or the entity) is missing: append it.
        what = f"broker POST {entity} {ATTRIBUTE}={value}"
        response = self._send("POST", url, body, deadline, what)
        with response:
            if response.status_code in (200, 201, 204):
                return BrokerOutcome.ACCEPTED
            if response.status_code == 404:
                return BrokerOutcome.ENTITY_NOT_FOUND
            if response.status_code == 207 and not _not_updated(response):
                return BrokerOutcome.ACCEPTED
            raise _error(response, what)


def _not_updated(response: requests.Response) -> bool:
    """True unless a 207 lists our attribute as updated. The shape of `notUpdated` differs
    between NGSI-LD versions, while `updated` is a plain list of names in all of them."""
    try:
        body = response.json()
    except ValueError:
        return True
    updated = body.get("updated") if isinstance(body, dict) else None
    if not isinstance(updated, list):
        return True
    return not any(isinstance(u, str) and (u == ATTRIBUTE or u.endswith("/" + ATTRIBUTE))
                   for u in updated)


def _detail(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.reason or ""
    if isinstance(body, dict):
        parts = [str(body[k]) for k in ("title", "detail") if body.get(k)]
        if parts:
            return ": ".join(parts)
    return response.reason or ""


def _error(response: requests.Response, what: str) -> Exception:
    code = response.status_code
    message = f"{what}: HTTP {code} {_detail(response)}".rstrip()
    if code >= 500 or code == 429:
        return TemporaryError(Reason.BROKER_ERROR, message, http_status=code)
    return PermanentError(Reason.BROKER_REJECTED, message, http_status=code)
