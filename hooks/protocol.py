"""Metacontroller hook messages (CompositeController, hook `version: v2`).

Requests are parsed leniently (Metacontroller may add fields); responses carry exactly the keys
Metacontroller v2 knows, because v2 rejects a response with an unknown key.
See docs/design.md §1.
"""

from __future__ import annotations

from typing import Any

from pydantic import AliasGenerator, BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

JSONObject = dict[str, Any]
# children / related: {"Kind.group/version": {"name" or "ns/name": object}}
ObjectMap = dict[str, dict[str, JSONObject]]


class _In(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class _Out(BaseModel):
    model_config = ConfigDict(
        alias_generator=AliasGenerator(alias=to_camel), populate_by_name=True,
        extra="forbid", frozen=True)


def _null_as_empty(value: Any) -> Any:
    return {} if value is None else value


class SyncRequest(_In):
    """Body of the sync and finalize hooks."""

    controller: JSONObject = Field(default_factory=dict)
    parent: JSONObject
    children: ObjectMap = Field(default_factory=dict)
    related: ObjectMap = Field(default_factory=dict)
    finalizing: bool = False

    _nulls = field_validator("controller", "children", "related", mode="before")(_null_as_empty)

    def related_object(self, key: str, name: str) -> JSONObject | None:
        """A related object by type key and name. A cluster-scoped object related to a
        namespaced parent is keyed by its bare name; `/name` and `ns/name` are accepted too in
        case a Metacontroller version qualifies it."""
        objects = self.related.get(key) or {}
        if name in objects:
            return objects[name]
        if f"/{name}" in objects:
            return objects[f"/{name}"]
        for rel, obj in objects.items():
            if rel.rpartition("/")[2] == name:
                return obj
        return None


class SyncResponse(_Out):
    """Answer of the sync and finalize hooks: exactly the keys Metacontroller v2 accepts."""

    status: JSONObject | None
    children: list[JSONObject] = Field(default_factory=list)
    resync_after_seconds: float = 0.0
    finalized: bool = False

    def wire(self) -> JSONObject:
        return self.model_dump(mode="json", by_alias=True)


class CustomizeRequest(_In):
    controller: JSONObject = Field(default_factory=dict)
    parent: JSONObject

    _nulls = field_validator("controller", mode="before")(_null_as_empty)


class RelatedResourceRule(_Out):
    api_version: str
    resource: str
    names: list[str]


class CustomizeResponse(_Out):
    related_resources: list[RelatedResourceRule] = Field(default_factory=list)

    def wire(self) -> JSONObject:
        return self.model_dump(mode="json", by_alias=True)
