"""The vocabulary between the pure decisions and the I/O layer: the calls a plan asks for
(`Action`) and what came back (`Observation`, `BrokerObservation`). Observations are plain
data (pydantic), so table tests can write them as JSON."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, model_validator

from hooks.errors import Failure
from hooks.reasons import Reason
from hooks.resources import EntitySource, Placement
from ieapi.contract import ContainerStatus


class ActionKind(StrEnum):
    ENSURE = "ensure"    # PUT /v1/containers/{name}
    OBSERVE = "observe"  # GET /v1/containers/{name} (read-only: the old IE during a migration)
    DELETE = "delete"    # DELETE /v1/containers/{name}


@dataclass(frozen=True)
class Action:
    """One call to one IE. `target` always comes from the old status or from the DIE that the
    status already names (the invariant: no call to an IE the status does not name)."""

    kind: ActionKind
    target: Placement

    @property
    def key(self) -> tuple[str, str]:
        return (self.kind.value, self.target.ie)


class _Data(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class Observation(_Data):
    """What one action found. ensure: `container` or `failure`; observe: `container` (None:
    the IE has no such container) or `failure`; delete: `deleted` or `failure`."""

    kind: ActionKind
    ie: str
    container: ContainerStatus | None = None
    deleted: bool | None = None
    failure: Failure | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.kind.value, self.ie)

    @property
    def confirmed_gone(self) -> bool:
        """A delete the IE confirmed: `deleted` false (nothing there) confirms too."""
        return self.kind is ActionKind.DELETE and self.failure is None and self.deleted is not None

    @model_validator(mode="after")
    def _shape(self) -> Observation:
        if self.failure is not None and (self.container is not None or self.deleted is not None):
            raise ValueError("an observation has either a result or a failure")
        if self.kind is ActionKind.ENSURE and self.failure is None and self.container is None:
            raise ValueError("an ensure observation needs `container` or `failure`")
        if self.kind is ActionKind.DELETE and self.failure is None and self.deleted is None:
            raise ValueError("a delete observation needs `deleted` or `failure`")
        return self

    @classmethod
    def not_attempted(cls, action: Action) -> Observation:
        """For an action the I/O layer did not get to: a temporary failure, retried later."""
        return cls(kind=action.kind, ie=action.target.ie, failure=Failure(
            temporary=True, reason=Reason.DEADLINE_EXCEEDED,
            message=f"{action.kind.value} on IE {action.target.ie}: not attempted"))


class BrokerOutcome(StrEnum):
    ACCEPTED = "Accepted"
    ENTITY_NOT_FOUND = "EntityNotFound"
    ENTITY_AMBIGUOUS = "EntityAmbiguous"  # the idPattern query found several: nothing written


class BrokerObservation(_Data):
    """The answer to one attempt to set `value` on the ServiceComponent entity: `entity` is
    the id written (or tried), `source` how it was found, `pattern` the idPattern query made
    (if any) and `candidates` what it found when that was more than one."""

    value: str
    outcome: BrokerOutcome | None = None
    failure: Failure | None = None
    entity: str | None = None
    source: EntitySource | None = None
    pattern: str | None = None
    candidates: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _shape(self) -> BrokerObservation:
        if (self.outcome is None) == (self.failure is None):
            raise ValueError("a broker observation has exactly one of `outcome`, `failure`")
        return self
