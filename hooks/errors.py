"""The two kinds of failure a peer call can end in (kopf-style): temporary ones are retried with
a growing backoff, permanent ones wait for a change (slow resync). `Failure` is the same thing
as plain data, so observations can hold it and JSON fixtures can describe it."""

from __future__ import annotations

from pydantic import AliasGenerator, BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from hooks.reasons import Reason


class Failure(BaseModel):
    """A failed call, as data: what the decision code sees instead of an exception."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True,
                              alias_generator=AliasGenerator(alias=to_camel))

    temporary: bool
    reason: Reason
    message: str
    code: str | None = None  # the peer's own error code (ieapi ErrorCode), when it sent one
    field: str | None = None  # the offending field, when the peer named one
    http_status: int | None = None


class PeerError(Exception):
    """Base of the failures a peer client raises; carries a `Reason` for conditions."""

    temporary: bool = True

    def __init__(self, reason: Reason, message: str, *, code: str | None = None,
                 field: str | None = None, http_status: int | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.code = code
        self.field = field
        self.http_status = http_status

    def failure(self) -> Failure:
        return Failure(temporary=self.temporary, reason=self.reason, message=self.message,
                       code=self.code, field=self.field, http_status=self.http_status)


class TemporaryError(PeerError):
    """Worth retrying soon: the peer is down, slow, or answered 5xx."""

    temporary = True


class PermanentError(PeerError):
    """Retrying the same request gives the same answer: needs a spec or config change."""

    temporary = False
