"""The OpenAPI 3.1 document of the IE API, generated from the contract models.

Generated rather than hand-written so it cannot drift from what the server validates: the
request schema is pydantic's *validation* schema of `ContainerSpec` (unknown fields rejected),
responses use the *serialization* schemas. OpenAPI 3.1 because its schemas are JSON Schema
2020-12, which is what pydantic emits (`anyOf [..., null]` for optional fields).
"""

from __future__ import annotations

import functools
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from ieapi.contract import (
    API_VERSION,
    CONTAINER_NAME_PATTERN,
    ENV_KEY_PATTERN,
    IMAGE_REFERENCE_MAX_LENGTH,
    IMAGE_REFERENCE_PATTERN,
    NO_NUL_PATTERN,
    ContainerList,
    ContainerSpec,
    ContainerStatus,
    DeleteResult,
    ErrorBody,
    IEInfo,
    LogsQuery,
)
from ieapi.settings import Settings

_REF = "#/components/schemas/{model}"
_MODELS: list[tuple[type[BaseModel], JsonSchemaMode]] = [
    (ContainerSpec, "validation"),
    (ContainerStatus, "serialization"),
    (ContainerList, "serialization"),
    (DeleteResult, "serialization"),
    (IEInfo, "serialization"),
    (ErrorBody, "serialization"),
]


def _json(schema_ref: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": schema_ref}}}


def _answer(description: str, model: str = "ErrorBody") -> dict[str, Any]:
    return {"description": description, "content": _json(_REF.format(model=model))}


_ERRORS_COMMON = {
    "401": _answer("Missing or wrong bearer token (Unauthorized)"),
    "500": _answer("Internal error (a bug: please report it)"),
    "502": _answer("Docker refused for a reason outside the request (DockerError)"),
    "503": _answer("Docker Engine unreachable (DockerUnavailable); retry later"),
}
_NAME_ERRORS = {"400": _answer("Invalid container name (field `name`)")}

_STATUS_OK = "ContainerStatus"


def _logs_parameters() -> list[dict[str, Any]]:
    """The logs query parameters, from the contract's LogsQuery (one source of truth)."""
    schema = LogsQuery.model_json_schema(by_alias=True)
    params = []
    for wire_name, prop in schema["properties"].items():
        options = prop.get("anyOf", [prop])
        typed = next(o for o in options if o.get("type") != "null")
        param_schema = {k: v for k, v in typed.items() if k != "title"}
        if "default" in prop and prop["default"] is not None:
            param_schema["default"] = prop["default"]
        params.append({"name": wire_name, "in": "query", "required": False,
                       "description": prop.get("description", ""), "schema": param_schema})
    return params


def _logs_operation() -> dict[str, Any]:
    defaults = Settings.model_fields
    max_tail = defaults["logs_max_tail_lines"].default
    max_bytes = defaults["logs_max_bytes"].default
    max_streams = defaults["logs_max_streams"].default
    return {
        "operationId": "containerLogs",
        "summary": "Output of a managed container (stdout and stderr interleaved)",
        "description": (
            "The bytes the container wrote, unchanged (not necessarily UTF-8). Bounded: `tail` "
            f"at most IEAPI_LOGS_MAX_TAIL_LINES lines (default {max_tail}, also the default "
            f"`tail`), at most IEAPI_LOGS_MAX_BYTES bytes per answer (default {max_bytes}, "
            "follow included; then the answer ends), at most IEAPI_LOGS_MAX_STREAMS answers "
            f"at once (default {max_streams}; more get 429). With `follow=true` the answer is "
            "chunked and ends when the container stops, when the byte limit is reached, or "
            "when the client closes the connection. Never for a container this API does not "
            "manage (404)."),
        "parameters": _logs_parameters(),
        "responses": {
            "200": {"description": "The log (chunked while following)",
                    "content": {"text/plain": {"schema": {"type": "string",
                                                          "format": "binary"}}}},
            "400": _answer("Invalid name or query parameter; `field` names it"),
            "404": _answer("No such managed container (NotFound)"),
            "429": _answer("Too many logs answers streaming (TooManyRequests); see "
                           "Retry-After"),
            **_ERRORS_COMMON,
        },
    }


def _paths() -> dict[str, Any]:
    name_param = {
        "name": "name", "in": "path", "required": True,
        "description": "Container name on the IE without the IE's prefix: "
                       "`<namespace>.<scd name>`",
        "schema": {"type": "string", "pattern": CONTAINER_NAME_PATTERN},
    }
    public: list[dict[str, list[str]]] = []
    return {
        "/healthz": {"get": {
            "operationId": "healthz", "summary": "Liveness (no auth, no Docker call)",
            "security": public,
            "responses": {"200": {"description": "Alive", "content": {"application/json": {
                "schema": {"type": "object", "properties": {"status": {"const": "ok"}},
                           "required": ["status"]}}}}},
        }},
        "/openapi.json": {"get": {
            "operationId": "openapi", "summary": "This document (no auth)", "security": public,
            "responses": {"200": {"description": "OpenAPI 3.1 document",
                                  "content": {"application/json": {"schema": {
                                      "type": "object"}}}}},
        }},
        "/metrics": {"get": {
            "operationId": "metrics",
            "summary": "Prometheus metrics: requests, Docker operation latency, pulls",
            "responses": {"200": {"description": "Prometheus text exposition format",
                                  "content": {"text/plain": {"schema": {"type": "string"}}}},
                          **_ERRORS_COMMON},
        }},
        f"/{API_VERSION}/info": {"get": {
            "operationId": "getInfo", "summary": "Identity and slow-changing facts of the IE",
            "responses": {"200": _answer("IE facts", "IEInfo"), **_ERRORS_COMMON},
        }},
        f"/{API_VERSION}/containers": {"get": {
            "operationId": "listContainers",
            "summary": "Managed containers (and names waiting for their image)",
            "responses": {"200": _answer("Managed containers", "ContainerList"),
                          **_ERRORS_COMMON},
        }},
        f"/{API_VERSION}/containers/{{name}}/logs": {
            "parameters": [name_param],
            "get": _logs_operation(),
        },
        f"/{API_VERSION}/containers/{{name}}": {
            "parameters": [name_param],
            "put": {
                "operationId": "ensureContainer",
                "summary": "Ensure the container matches the spec (idempotent)",
                "requestBody": {"required": True, "content": _json(
                    _REF.format(model="ContainerSpec"))},
                "responses": {
                    "200": _answer("Existed with the same spec (started again if a stopped "
                                   "non-job), or the image pull failed (state pullFailed)",
                                   _STATUS_OK),
                    "201": _answer("Created, or replaced after a spec change", _STATUS_OK),
                    "202": _answer("Image being pulled in the background (state pulling)",
                                   _STATUS_OK),
                    "400": _answer("Invalid body or name; `field` names the culprit"),
                    "403": _answer("Privileged container not allowed (PrivilegedNotAllowed)"),
                    "409": _answer("Host port in use (PortInUse) or name taken by a container "
                                   "this API does not manage (Conflict)"),
                    "413": _answer("Body too large (PayloadTooLarge)"),
                    **_ERRORS_COMMON,
                },
            },
            "get": {
                "operationId": "getContainer", "summary": "Observed state of one container",
                "responses": {"200": _answer("Observed state", _STATUS_OK),
                              "404": _answer("No such managed container (NotFound)"),
                              **_NAME_ERRORS, **_ERRORS_COMMON},
            },
            "delete": {
                "operationId": "deleteContainer",
                "summary": "Remove the container; absent is success; cancels a pending create",
                "responses": {"200": _answer("Removed, or nothing to remove", "DeleteResult"),
                              **_NAME_ERRORS, **_ERRORS_COMMON},
            },
        },
    }


def _with_server_rules(schemas: dict[str, Any]) -> dict[str, Any]:
    """Add the rules the server checks beyond the models (ieapi.desired.desired_container), so
    that a request valid by this document is one the server accepts."""
    spec = schemas["ContainerSpec"]["properties"]
    spec["image"].update(pattern=IMAGE_REFERENCE_PATTERN, maxLength=IMAGE_REFERENCE_MAX_LENGTH)
    schemas["KeyValue"]["properties"]["key"]["pattern"] = ENV_KEY_PATTERN
    schemas["KeyValue"]["properties"]["value"]["pattern"] = NO_NUL_PATTERN
    cli = schemas["CliArg"]["properties"]
    cli["key"]["pattern"] = NO_NUL_PATTERN
    for option in cli["value"].get("anyOf", []):
        if option.get("type") == "string":
            option["pattern"] = NO_NUL_PATTERN
    return schemas


@functools.cache
def document() -> dict[str, Any]:
    """The whole OpenAPI document (built once; the contract does not change at run time)."""
    _, schemas = models_json_schema(_MODELS, ref_template=_REF)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "LLO Docker: IE Docker API",
            "version": API_VERSION,
            "description": "Authenticated REST service over the Docker Engine of one aerOS "
                           "Infrastructure Element. Errors: `{\"error\": {\"code\", \"message\", "
                           "\"field\"}}`.",
        },
        "paths": _paths(),
        "components": {
            "schemas": _with_server_rules(schemas.get("$defs", {})),
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearerAuth": []}],
    }
