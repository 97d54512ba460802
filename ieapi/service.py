"""The IE contract's operations, independent of the transport that carries them.

The HTTP routes (`ieapi.api`) and the NATS agent (`ieapi.agent`) both call these functions, so
there is one place that validates a request and one that turns it into engine calls. Each
operation answers a `Reply`: the contract model and the status code the contract gives it (the
HTTP status; over NATS it travels as a CloudEvents extension attribute). Foreseeable failures
are raised as `IEApiError`, which each transport renders as an `ErrorBody`.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ValidationError
from pydantic.alias_generators import to_camel

from ieapi.contract import (
    ContainerList,
    ContainerSpec,
    DeleteResult,
    is_valid_container_name,
)
from ieapi.engine import Engine
from ieapi.errors import InvalidRequestError, NotFoundError
from ieapi.natswire import Operation

_MAX_REPORTED_ERRORS = 10


@dataclass(frozen=True)
class Reply:
    """A successful answer: the contract model and its status code (200, 201 or 202)."""

    body: BaseModel
    status: int = 200


class Service:
    """The contract over one engine; thread-safe as far as the engine is."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def info(self) -> Reply:
        return Reply(self.engine.info())

    def list(self) -> Reply:
        return Reply(ContainerList(items=self.engine.list_containers()))

    def ensure(self, name: str, body: bytes) -> Reply:
        check_name(name)
        spec = parse_spec(body)
        ensured = self.engine.ensure(name, spec)
        return Reply(ensured.status, ensured.outcome.http_status)

    def get(self, name: str) -> Reply:
        check_name(name)
        status = self.engine.get(name)
        if status is None:
            raise NotFoundError(f"no managed container {name!r}")
        return Reply(status)

    def delete(self, name: str) -> Reply:
        check_name(name)
        return Reply(DeleteResult(name=name, deleted=self.engine.delete(name)))

    def call(self, operation: Operation, name: str | None = None, body: bytes = b"") -> Reply:
        """One operation by its name (the NATS agent's dispatch)."""
        if operation.takes_name and name is None:
            raise InvalidRequestError(f"{operation.value} needs a container name", field="name")
        match operation:
            case Operation.INFO:
                return self.info()
            case Operation.LIST:
                return self.list()
            case Operation.ENSURE:
                return self.ensure(name or "", body)
            case Operation.GET:
                return self.get(name or "")
            case Operation.DELETE:
                return self.delete(name or "")


def check_name(name: str) -> None:
    if not is_valid_container_name(name):
        raise InvalidRequestError(
            "name must match [a-zA-Z0-9][a-zA-Z0-9_.-]{0,199} (e.g. <namespace>.<scd name>)",
            field="name")


def parse_spec(body: bytes) -> ContainerSpec:
    try:
        return ContainerSpec.model_validate_json(body)
    except ValidationError as exc:
        raise invalid_request_from(exc) from exc


def field_path(loc: tuple[int | str, ...]) -> str:
    """A pydantic error location as the wire's dotted camelCase path, e.g. `ports.0.number`."""
    return ".".join(to_camel(part) if isinstance(part, str) else str(part) for part in loc)


def invalid_request_from(exc: ValidationError) -> InvalidRequestError:
    """One 400 naming the first offending field and listing what is wrong (never the values:
    a rejected body may carry a password)."""
    errors = exc.errors(include_url=False, include_input=False)
    first = errors[0]
    if first["type"] == "json_invalid":
        return InvalidRequestError(f"body is not valid JSON: {first['msg']}")
    problems = "; ".join(
        f"{field_path(err['loc']) or 'body'}: {err['msg']}"
        for err in errors[:_MAX_REPORTED_ERRORS])
    return InvalidRequestError(problems, field=field_path(first["loc"]) or None)
