"""Metacontroller's API rate limit, as the Metacontroller test driver spends it.

Metacontroller v4.17.2 sets ``--client-go-qps`` (default 5) and ``--client-go-burst`` (default
10) on the rest.Config of its dynamic client, so every request that client sends first waits in
client-go's ``flowcontrol.NewTokenBucketRateLimiter(qps, burst)`` (rest/request.go
``tryThrottle``): a ``golang.org/x/time/rate`` Limiter that starts full (``burst`` tokens),
refills at ``qps`` per second up to ``burst``, and hands out tokens in the order they were asked
for, going into debt (a caller reserves now and sleeps until its token is due).
:class:`TokenBucket` is that limiter.

Which requests spend a token (metacontroller pkg/controller/composite/controller.go,
pkg/dynamic/clientset/clientset.go):

- adding or removing the finalizer: ``AtomicUpdate``, a GET of the live object, then an UPDATE
  when it still needs the change;
- the parent's status after every sync: ``AtomicStatusUpdate``, a GET of the live object (even
  when the status did not change), then an UPDATE of ``/status`` when it differs; a GET that
  answers 404 (the object went away with its finalizer) ends it.

Not modelled: reads from informers (the parent, related objects) spend nothing per sync; their
LIST and WATCH requests at start and on each relist (``--cache-flush-interval``, 30 min) do, a
handful per hour. Events go through a client of their own (its own bucket, plus a per-object
spam filter), and the CompositeController objects through controller-runtime's client.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_QPS = 5.0    # Metacontroller's --client-go-qps default (client-go's DefaultQPS too)
DEFAULT_BURST = 10   # Metacontroller's --client-go-burst default


@dataclass
class TokenBucket:
    """client-go's token-bucket rate limiter; ``qps`` <= 0 means no limit."""

    qps: float = DEFAULT_QPS
    burst: int = DEFAULT_BURST
    _tokens: float = field(init=False)
    _last: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.qps > 0 and self.burst < 1:
            raise ValueError("burst must be at least 1 when qps is limited")
        self._tokens = float(self.burst)

    @property
    def limited(self) -> bool:
        return self.qps > 0

    def reserve(self, now: float) -> float:
        """Take one token at ``now``; the seconds the request must wait for it (0: at once).
        Like ``rate.Limiter.ReserveN(now, 1)``: the token is owed even while waiting, so later
        callers queue behind."""
        if not self.limited:
            return 0.0
        if self._last is not None and now > self._last:
            self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.qps)
        if self._last is None or now > self._last:
            self._last = now
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self.qps


@dataclass(frozen=True)
class ApiRequest:
    """One request Metacontroller's client sent for a parent: ``verb`` is ``get``,
    ``update`` (the object: finalizers) or ``update-status``; ``found`` False for a 404."""

    verb: str
    kind: str
    namespace: str | None
    name: str
    at: float           # when it was sent (after its wait for a token)
    waited: float       # seconds it waited for its token
    found: bool = True

    @property
    def write(self) -> bool:
        return self.verb != "get"


def requests_for(log: list[ApiRequest], name: str, since: int = 0) -> list[ApiRequest]:
    """The requests for the object called ``name`` in ``log[since:]``."""
    return [r for r in log[since:] if r.name == name]
