"""Reading a container's log from its IE Docker API (`GET /v1/containers/{name}/logs`).

One requests.Session, no environment proxies or CA bundles (the IE is addressed explicitly,
as the hooks do), explicit timeouts: connect 5 s; read 30 s, except while following, where
a quiet container may say nothing for hours (Ctrl-C ends it).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import requests

from ieapi.contract import ErrorBody
from llocli.locate import Target

CONNECT_TIMEOUT_SECONDS = 5.0
READ_TIMEOUT_SECONDS = 30.0


class IEError(Exception):
    """The IE API could not be reached or refused; the message says what to check."""


@dataclass(frozen=True)
class LogRequest:
    tail: int | None = None
    since: str | None = None
    timestamps: bool = False
    follow: bool = False


def stream(target: Target, token: str | None, query: LogRequest,
           ca_bundle: Path | None = None) -> Iterator[bytes]:
    """The log's bytes as they come; raises IEError before the first byte when it cannot."""
    params: dict[str, str] = {}
    if query.tail is not None:
        params["tail"] = str(query.tail)
    if query.since:
        params["since"] = query.since
    if query.timestamps:
        params["timestamps"] = "true"
    if query.follow:
        params["follow"] = "true"
    url = f"{target.url}/v1/containers/{quote(target.container, safe='')}/logs"
    verify: bool | str = False if target.insecure_skip_tls_verify else (
        str(ca_bundle) if ca_bundle else True)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with requests.Session() as session:
        session.trust_env = False
        try:
            response = session.get(
                url, params=params, headers=headers, stream=True, verify=verify,
                timeout=(CONNECT_TIMEOUT_SECONDS, None if query.follow else READ_TIMEOUT_SECONDS))
        except requests.exceptions.SSLError as exc:
            raise IEError(f"TLS to the IE API of IE {target.ie!r} ({target.url}) failed: give "
                          "its CA with --ca-bundle") from exc
        except requests.RequestException as exc:
            raise IEError(
                f"cannot reach the IE API of IE {target.ie!r} at {target.url} "
                f"({_why(exc)}). The logs come straight from the IE: its API must be "
                "reachable from where you run this command (VPN, port-forward)") from exc
        with response:
            if response.status_code != 200:
                raise IEError(_refusal(target, response))
            try:
                yield from response.iter_content(chunk_size=None)
            except requests.RequestException as exc:
                raise IEError(f"the IE API of IE {target.ie!r} broke off: {_why(exc)}") from exc


def _why(exc: requests.RequestException) -> str:
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return "connect timed out"
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return "no answer within the read timeout"
    if isinstance(exc, requests.exceptions.ConnectionError):
        return "connection refused or reset"
    return type(exc).__name__


def _refusal(target: Target, response: requests.Response) -> str:
    detail = ""
    try:
        detail = ErrorBody.model_validate_json(response.content).error.message
    except ValueError:
        detail = response.reason or ""
    where = f"IE {target.ie!r} ({target.url})"
    if response.status_code == 401:
        return (f"{where} refused the token from key {target.token_key!r}: it differs from "
                "the IE's IEAPI_TOKEN")
    if response.status_code == 404:
        return (f"{where} has no container {target.container!r} (not created yet, or removed): "
                f"{detail}")
    if response.status_code == 429:
        return f"{where} is busy streaming other logs; retry in a moment: {detail}"
    return f"{where} answered HTTP {response.status_code}: {detail}"
