"""The CRD API server's structural-schema handling, for the in-memory object store.

One class, :class:`StructuralSchema`, does what the API server does with a CRD's
``openAPIV3Schema`` on every write: unknown fields and nulls of non-nullable fields are pruned,
defaults applied, then types, enum, pattern, length, range, required fields and list-map keys
validated, and CEL ``x-kubernetes-validations`` rules evaluated on the defaulted value with
cel-python (``celpy``), as the API server does after defaulting.

cel-python implements standard CEL, not the Kubernetes CEL libraries (``lowerAscii``,
``isURL``, ``quantity``, ...) nor transition rules (``oldSelf``). :func:`unevaluable_rules`
names every rule of a schema it cannot evaluate like the API server; such a rule is skipped
(never a false refusal) and the tiers that use the driver list them
(tests/doubles/test_cel_rules.py holds the explicit list: today none).
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import celpy
from celpy import evaluation
from celpy.adapter import json_to_cel

JSON = dict[str, Any]

_DATE_TIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_TYPES: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
}


class InvalidError(ValueError):
    """The API server would refuse the object (HTTP 422); ``errors`` lists field errors."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


def check_object_name(name: Any, namespace: Any, namespaced: bool) -> None:
    """ObjectMeta rules the API server checks itself: a DNS-1123 subdomain name, a DNS label
    namespace, and a namespace only on namespaced kinds."""
    if not (isinstance(name, str) and len(name) <= 253 and _DNS_SUBDOMAIN.match(name)):
        raise InvalidError([f"metadata.name: Invalid value: {name!r}: a DNS-1123 subdomain"])
    if namespace is not None and not (namespaced and isinstance(namespace, str)
                                      and _DNS_LABEL.match(namespace)):
        raise InvalidError([f"metadata.namespace: Invalid value: {namespace!r}"])


# ------------------------------------------------------------------ CEL

# Macros the CEL parser expands itself, and the functions celpy's standard library provides.
_CEL_MACROS = frozenset({"all", "exists", "exists_one", "map", "filter", "has"})
_CEL_FUNCTIONS = frozenset(evaluation.base_functions) | _CEL_MACROS
_CALL = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*\(")
_STRING = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")


@dataclass(frozen=True)
class CelRule:
    """One ``x-kubernetes-validations`` entry and where it sits in the schema."""

    path: str
    rule: str
    message: str


def cel_rules(schema: JSON, path: str = "") -> list[CelRule]:
    """Every CEL rule of ``schema``, with the path of the value it applies to."""
    found = [CelRule(path or ".", v["rule"], v.get("message") or f"failed rule: {v['rule']}")
             for v in schema.get("x-kubernetes-validations", [])]
    for key, sub in (schema.get("properties") or {}).items():
        found += cel_rules(sub, f"{path}.{key}")
    if isinstance(schema.get("items"), dict):
        found += cel_rules(schema["items"], f"{path}[*]")
    if isinstance(schema.get("additionalProperties"), dict):
        found += cel_rules(schema["additionalProperties"], f"{path}[*]")
    return found


def why_unevaluable(rule: str) -> str | None:
    """Why cel-python cannot evaluate ``rule`` as the API server would; None when it can."""
    if re.search(r"\boldSelf\b", rule):
        return "a transition rule (oldSelf): the driver keeps no old object to compare"
    unknown = sorted(set(_CALL.findall(_STRING.sub("''", rule))) - _CEL_FUNCTIONS)
    if unknown:
        return f"calls Kubernetes CEL library functions cel-python lacks: {', '.join(unknown)}"
    try:
        _program(rule)
    except Exception as exc:  # any parse failure means "cannot evaluate"
        return f"cel-python cannot parse it: {exc}"
    return None


def unevaluable_rules(schema: JSON) -> dict[CelRule, str]:
    """The rules of ``schema`` the driver skips, with the reason."""
    return {r: why for r in cel_rules(schema) if (why := why_unevaluable(r.rule)) is not None}


@functools.cache
def _program(rule: str) -> Any:
    env = celpy.Environment()
    return env.program(env.compile(rule))


def _holds(rule: str, value: Any) -> bool | str:
    """True when ``rule`` holds for ``self`` = ``value``; False, or an error text, when not."""
    try:
        result = _program(rule).evaluate({"self": json_to_cel(value)})
    except Exception as exc:  # a runtime error fails the rule, as in Kubernetes
        return str(exc)
    if isinstance(result, Exception):
        return str(result)
    return bool(result)


class StructuralSchema:
    """One CRD version's ``openAPIV3Schema`` as the API server applies it."""

    def __init__(self, schema: JSON) -> None:
        self.schema = schema

    def apply(self, value: Any, path: str = "") -> tuple[Any, list[str]]:
        """Prune, default and validate ``value`` (a copy); returns it and the field errors."""
        errors: list[str] = []
        result = self._apply(copy.deepcopy(value), self.schema, path or "<root>", errors)
        return result, errors

    def check_object(self, obj: JSON) -> JSON:
        """An object as written through the main resource: ``.status`` is not part of it (a
        subresource). InvalidError when the server would answer 422."""
        body = {k: v for k, v in obj.items() if k != "status"}
        schema = {**self.schema, "properties": {
            k: v for k, v in self.schema.get("properties", {}).items() if k != "status"}}
        result, errors = StructuralSchema(schema).apply(body)
        if errors:
            raise InvalidError(errors)
        out: JSON = result
        return out

    def check_status(self, status: JSON) -> JSON:
        """A ``.status`` written through the status subresource; InvalidError on a 422."""
        result, errors = StructuralSchema(self.schema["properties"]["status"]).apply(
            status, ".status")
        if errors:
            raise InvalidError(errors)
        out: JSON = result
        return out

    # ------------------------------------------------------------------ the walk

    def _apply(self, value: Any, schema: JSON, path: str, errors: list[str]) -> Any:
        if value is None:
            if not schema.get("nullable", False):
                errors.append(f"{path}: Invalid value: null")
            return value
        typ = schema.get("type")
        if typ is not None and not _TYPES[typ](value):
            errors.append(f"{path}: Invalid value: {type(value).__name__}: must be {typ}")
            return value
        if schema.get("x-kubernetes-int-or-string"):
            return value
        if isinstance(value, dict):
            value = self._apply_object(value, schema, path, errors)
        elif isinstance(value, list):
            value = self._apply_array(value, schema, path, errors)
        else:
            self._check_scalar(value, schema, path, errors)
        self._check_rules(value, schema, path, errors)
        return value

    @staticmethod
    def _check_rules(value: Any, schema: JSON, path: str, errors: list[str]) -> None:
        """x-kubernetes-validations on the defaulted value (skipped: see unevaluable_rules)."""
        for validation in schema.get("x-kubernetes-validations", []):
            rule = validation["rule"]
            if why_unevaluable(rule) is not None:
                continue
            holds = _holds(rule, value)
            if holds is True:
                continue
            message = validation.get("message") or f"failed rule: {rule}"
            detail = f" ({holds})" if isinstance(holds, str) else ""
            errors.append(f"{path}: Invalid value: {type(value).__name__}: {message}{detail}")

    def _apply_object(self, value: JSON, schema: JSON, path: str, errors: list[str]) -> JSON:
        props: JSON = schema.get("properties", {})
        additional = schema.get("additionalProperties")
        preserve = schema.get("x-kubernetes-preserve-unknown-fields", False)
        if not props and additional is None and not preserve and path.endswith(".metadata"):
            return value  # ObjectMeta is validated by the API server itself, never pruned
        out: JSON = {}
        for key, item in value.items():
            sub = props.get(key)
            if sub is None and isinstance(additional, dict):
                sub = additional
            if sub is None:
                if preserve:
                    out[key] = item
                continue  # pruned
            if item is None and not sub.get("nullable", False):
                continue  # null of a non-nullable field: pruned before defaulting
            out[key] = self._apply(item, sub, f"{path}.{key}", errors)
        for key, sub in props.items():
            if key not in out and "default" in sub:
                out[key] = self._apply(copy.deepcopy(sub["default"]), sub, f"{path}.{key}",
                                       errors)
        for key in schema.get("required", []):
            if key not in out:
                errors.append(f"{path}.{key}: Required value")
        return out

    def _apply_array(self, value: list[Any], schema: JSON, path: str,
                     errors: list[str]) -> list[Any]:
        items = schema.get("items", {})
        out = [self._apply(item, items, f"{path}[{i}]", errors) for i, item in enumerate(value)]
        if "maxItems" in schema and len(out) > schema["maxItems"]:
            errors.append(f"{path}: Too many: {len(out)}: must have at most "
                          f"{schema['maxItems']} items")
        if "minItems" in schema and len(out) < schema["minItems"]:
            errors.append(f"{path}: Too few: must have at least {schema['minItems']} items")
        if schema.get("x-kubernetes-list-type") == "map":
            keys = schema.get("x-kubernetes-list-map-keys", [])
            seen: set[str] = set()
            for i, item in enumerate(out):
                if isinstance(item, dict):
                    k = json.dumps([item.get(x) for x in keys])
                    if k in seen:
                        errors.append(f"{path}[{i}]: Duplicate value: {k}")
                    seen.add(k)
        elif schema.get("x-kubernetes-list-type") == "set" and \
                len({json.dumps(i, sort_keys=True) for i in out}) != len(out):
            errors.append(f"{path}: Duplicate value")
        return out

    @staticmethod
    def _check_scalar(value: Any, schema: JSON, path: str, errors: list[str]) -> None:
        if "enum" in schema and value not in schema["enum"]:
            errors.append(f"{path}: Unsupported value: {value!r}: supported values: "
                          f"{schema['enum']}")
        if isinstance(value, str):
            if "maxLength" in schema and len(value) > schema["maxLength"]:
                errors.append(f"{path}: Too long: may not be more than {schema['maxLength']}")
            if "minLength" in schema and len(value) < schema["minLength"]:
                errors.append(f"{path}: Invalid value: should be at least "
                              f"{schema['minLength']} long")
            if "pattern" in schema and not re.search(schema["pattern"], value):
                errors.append(f"{path}: Invalid value: {value!r}: should match "
                              f"{schema['pattern']!r}")
            if schema.get("format") == "date-time" and not _DATE_TIME.match(value):
                errors.append(f"{path}: Invalid value: {value!r}: must be a date-time")
        elif isinstance(value, int | float) and not isinstance(value, bool):
            if "minimum" in schema and value < schema["minimum"]:
                errors.append(f"{path}: Invalid value: {value}: should be >= {schema['minimum']}")
            if "maximum" in schema and value > schema["maximum"]:
                errors.append(f"{path}: Invalid value: {value}: should be <= {schema['maximum']}")


def apply_schema(value: Any, schema: JSON, path: str = "") -> tuple[Any, list[str]]:
    """Prune, default and validate ``value`` against ``schema`` (see :class:`StructuralSchema`)."""
    return StructuralSchema(schema).apply(value, path)
