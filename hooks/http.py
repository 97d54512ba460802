"""What the two peer clients share: a time budget per hook call, pooled sessions, and one
request helper that retries only what is safe to retry.

Metacontroller gives a hook 10 s. A sync may call several IEs and the broker, each with its own
(connect, read) timeouts, so every call also draws from one `Deadline`: a slow peer shortens
the time left for the next call instead of pushing the whole answer past the hook timeout.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from hooks.errors import PermanentError, TemporaryError
from hooks.reasons import Reason

# Below this much time left a call is not started: it could not finish anyway.
MIN_CALL_SECONDS = 0.05
RETRY_PAUSE_SECONDS = 0.1


class Deadline:
    """A monotonic time budget for one hook call."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._end = clock() + seconds

    def remaining(self) -> float:
        return max(0.0, self._end - self._clock())

    def timeouts(self, connect: float, read: float, what: str) -> tuple[float, float]:
        """(connect, read) timeouts clamped to the budget; raises when nothing is left."""
        left = self.remaining()
        if left < MIN_CALL_SECONDS:
            raise TemporaryError(Reason.DEADLINE_EXCEEDED,
                                 f"{what}: not attempted, the hook's time budget is used up")
        return (min(connect, left), min(read, left))


class Suspects:
    """Peers whose last call could not reach them (a timeout, or no connection after the
    retries). While one call is already trying such a peer again, other calls to it fail at once
    with the same failure text instead of each holding a hook thread for the whole timeout: a
    dead IE then holds at most one thread per process, however many syncs want it, and cannot
    starve the syncs of healthy IEs. The first answer (any HTTP status) clears the peer.
    Sequential calls always try for real, so a single caller sees no difference."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._down: dict[str, str] = {}  # origin -> failure text (what follows "<what>: ")
        self._probing: set[str] = set()

    def admit(self, origin: str) -> tuple[str | None, bool]:
        """(failure to report without calling, or None; whether this call is the probe)."""
        with self._lock:
            failure = self._down.get(origin)
            if failure is None:
                return None, False
            if origin in self._probing:
                return failure, False
            self._probing.add(origin)
            return None, True

    def done(self, origin: str, *, probe: bool, answered: bool, failure: str | None) -> None:
        """Record how an admitted call ended (neither answered nor failed: state unchanged)."""
        with self._lock:
            if probe:
                self._probing.discard(origin)
            if answered:
                self._down.pop(origin, None)
            elif failure is not None:
                self._down[origin] = failure


def origin_of(url: str) -> str:
    """`scheme://host:port` of an absolute URL."""
    return "/".join(url.split("/", 3)[:3])


def pooled_session(pool_hosts: int, pool_per_host: int) -> requests.Session:
    """One Session per process: keep-alive connections to many peers, no environment proxies
    or netrc (peers are addressed explicitly; behaviour must not depend on the shell)."""
    session = requests.Session()
    session.trust_env = False
    adapter = HTTPAdapter(pool_connections=pool_hosts, pool_maxsize=pool_per_host, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def send(session: requests.Session, method: str, url: str, *, deadline: Deadline,
         connect_timeout: float, read_timeout: float, retries: int, unreachable: Reason,
         tls_failure: Reason, retry_statuses: Iterable[int] = (), what: str,
         suspects: Suspects | None = None, verify: bool | str = True,
         **kwargs: Any) -> requests.Response:
    """Send one request; retry (at most `retries` times, inside the deadline) only when the
    connection failed before a request could have been processed, or on `retry_statuses`.
    Callers pass only idempotent methods here. Transport failures become TemporaryError
    (`unreachable`), except TLS failures (`tls_failure`), which a retry cannot fix. With
    `suspects`, a peer that another call is already retrying fails at once (see Suspects)."""
    origin = origin_of(url) if suspects is not None else ""
    probe = False
    if suspects is not None:
        known, probe = suspects.admit(origin)
        if known is not None:
            raise TemporaryError(unreachable, f"{what}: {known}")
    answered, failure = False, None
    try:
        response = _send(session, method, url, deadline=deadline,
                         connect_timeout=connect_timeout, read_timeout=read_timeout,
                         retries=retries, unreachable=unreachable, tls_failure=tls_failure,
                         retry_on=frozenset(retry_statuses), what=what, verify=verify,
                         kwargs=kwargs)
        answered = True
        return response
    except _PeerUnreachableError as exc:
        failure = exc.detail
        raise
    finally:
        if suspects is not None:
            suspects.done(origin, probe=probe, answered=answered, failure=failure)


class _PeerUnreachableError(TemporaryError):
    """No answer at all: a timeout, or no connection after the retries."""

    def __init__(self, reason: Reason, what: str, detail: str) -> None:
        super().__init__(reason, f"{what}: {detail}")
        self.detail = detail


def _send(session: requests.Session, method: str, url: str, *, deadline: Deadline,
          connect_timeout: float, read_timeout: float, retries: int, unreachable: Reason,
          tls_failure: Reason, retry_on: frozenset[int], what: str, verify: bool | str,
          kwargs: dict[str, Any]) -> requests.Response:
    # Prepared here rather than by Session.request, whose setting merges (params, auth, hooks,
    # environment: none is used, trust_env is off) cost ~0.1 ms of CPU per call on Python 3.11.
    # The session's default headers and cookies still apply.
    headers = {**session.headers, **(kwargs.pop("headers", None) or {})}
    prepared = requests.Request(method, url, headers=headers, cookies=session.cookies,
                                **kwargs).prepare()
    attempt = 0
    while True:
        timeout = deadline.timeouts(connect_timeout, read_timeout, what)
        try:
            response = session.send(prepared, timeout=timeout, verify=verify, proxies={})
        except requests.exceptions.SSLError as exc:
            raise PermanentError(tls_failure, f"{what}: TLS error: {describe(exc)}") from exc
        except requests.exceptions.Timeout as exc:
            # A read timeout may have done the work; a retry would double the wait. Give up.
            raise _PeerUnreachableError(unreachable, what, describe(exc)) from exc
        except requests.exceptions.ConnectionError as exc:
            if attempt < retries and deadline.remaining() > RETRY_PAUSE_SECONDS + MIN_CALL_SECONDS:
                attempt += 1
                time.sleep(RETRY_PAUSE_SECONDS)
                continue
            raise _PeerUnreachableError(unreachable, what,
                                        f"cannot connect: {describe(exc)}") from exc
        except requests.exceptions.RequestException as exc:
            raise TemporaryError(unreachable, f"{what}: {describe(exc)}") from exc
        if response.status_code in retry_on and attempt < retries \
                and deadline.remaining() > RETRY_PAUSE_SECONDS + MIN_CALL_SECONDS:
            attempt += 1
            response.close()
            time.sleep(RETRY_PAUSE_SECONDS)
            continue
        return response


def describe(exc: BaseException) -> str:
    """A short, stable description of a transport failure. Stable matters: the text ends up in
    status messages, and urllib3's own messages embed object addresses that differ on every
    call, which would turn each sync into a status write and so into another sync."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return "connect timed out"
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return "no answer within the read timeout"
    innermost: BaseException | None = None
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        cur = todo.pop()
        if id(cur) in seen:
            continue
        seen.add(id(cur))
        if isinstance(cur, OSError) and not isinstance(cur, requests.exceptions.RequestException):
            innermost = cur
        for nxt in (cur.__cause__, cur.__context__, getattr(cur, "reason", None)):
            if isinstance(nxt, BaseException):
                todo.append(nxt)
    if isinstance(innermost, ssl.SSLError):
        verify = getattr(innermost, "verify_message", None)
        return str(innermost.reason or "TLS error") + (f": {verify}" if verify else "")
    if isinstance(innermost, OSError) and innermost.strerror:
        return str(innermost.strerror)
    return type(innermost or exc).__name__
