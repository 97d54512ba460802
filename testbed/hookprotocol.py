"""Metacontroller's side of the hook protocol (v2 hooks), as the test driver needs it: how an
answer is decoded (strict mode, Go ``encoding/json`` type rules), how ``Retry-After`` is read,
and how a related-resource rule's label selector matches. See docs/design.md,
"Metacontroller's hook protocol".
"""

from __future__ import annotations

import json
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import Any

JSON = dict[str, Any]


class HookError(Exception):
    """A hook call that Metacontroller counts as failed."""


class TooManyRequestsError(HookError):
    def __init__(self, after_seconds: int) -> None:
        super().__init__(f"Too many request, it will be resync after: {after_seconds}")
        self.after_seconds = after_seconds



def _pairs(pairs: list[tuple[str, Any]]) -> JSON:
    out: JSON = {}
    dupes = []
    for k, v in pairs:
        if k in out:
            dupes.append(k)
        out[k] = v
    if dupes:
        out["\x00duplicates"] = dupes
    return out


def _decode(body: bytes) -> Any:
    """JSON with duplicate keys remembered (Go reports them in strict mode)."""
    try:
        return json.loads(body, object_pairs_hook=_pairs)
    except ValueError as exc:
        raise HookError(f"can't unmarshal webhookResponse: {exc}") from exc


def _check_fields(obj: JSON, fields: dict[str, Callable[[Any], bool]], where: str,
                  strict_errors: list[str]) -> None:
    """Go ``encoding/json`` into a struct: wrong types are fatal, unknown or duplicate keys are
    strict-mode errors (sigs.k8s.io/json UnmarshalStrict, case-sensitive)."""
    for dup in obj.pop("\x00duplicates", []):
        strict_errors.append(f'duplicate field "{dup}"')
    for key, value in obj.items():
        check = fields.get(key)
        if check is None:
            strict_errors.append(f'unknown field "{where}{key}"')
        elif value is not None and not check(value):
            raise HookError(f"can't unmarshal webhookResponse: json: cannot unmarshal "
                            f"{type(value).__name__} into field {where}{key}")


def _strip_dupes(value: Any, strict_errors: list[str]) -> Any:
    """Free-form maps (status, children) still report duplicate keys in strict mode."""
    if isinstance(value, dict):
        for dup in value.pop("\x00duplicates", []):
            strict_errors.append(f'duplicate field "{dup}"')
        return {k: _strip_dupes(v, strict_errors) for k, v in value.items()}
    if isinstance(value, list):
        return [_strip_dupes(v, strict_errors) for v in value]
    return value


def _is_obj(v: Any) -> bool:
    return isinstance(v, dict)


def _is_list_of(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, list) and all(i is None or check(i) for i in v)


def _is_str(v: Any) -> bool:
    return isinstance(v, str)


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _is_str_map(v: Any) -> bool:
    return isinstance(v, dict) and all(isinstance(x, str) for k, x in v.items() if k[0] != "\x00")


_SYNC_FIELDS = {"status": _is_obj, "children": _is_list_of(_is_obj),
                "resyncAfterSeconds": _is_num, "finalized": lambda v: isinstance(v, bool)}
_SELECTOR_FIELDS = {"matchLabels": _is_str_map, "matchExpressions": _is_list_of(_is_obj)}
_EXPRESSION_FIELDS = {"key": _is_str, "operator": _is_str, "values": _is_list_of(_is_str)}
_RULE_FIELDS = {"apiVersion": _is_str, "resource": _is_str, "labelSelector": _is_obj,
                "namespaceSelector": _is_obj, "namespace": _is_str,
                "names": _is_list_of(_is_str)}


def parse_sync_response(body: bytes, strict: bool) -> JSON:
    """A sync/finalize hook answer as Metacontroller decodes it (see module docstring)."""
    errors: list[str] = []
    raw = _decode(body)
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise HookError(f"can't unmarshal webhookResponse: cannot unmarshal "
                        f"{type(raw).__name__} into CompositeHookResponse")
    _check_fields(raw, _SYNC_FIELDS, "", errors)
    raw = _strip_dupes(raw, errors)
    if strict and errors:
        raise HookError(f"strict validation failed for v2 webhookResponse: {', '.join(errors)}")
    return {k: v for k, v in raw.items() if k in _SYNC_FIELDS}


def parse_customize_response(body: bytes, strict: bool) -> list[JSON]:
    """The ``relatedResources`` rules of a customize answer, decoded like Metacontroller."""
    errors: list[str] = []
    raw = _decode(body)
    if raw is None:
        return []
    if not isinstance(raw, dict):
        raise HookError("can't unmarshal webhookResponse: not an object")
    _check_fields(raw, {"relatedResources": _is_list_of(_is_obj)}, "", errors)
    rules = []
    for i, rule in enumerate(raw.get("relatedResources") or []):
        if rule is None:
            continue
        _check_fields(rule, _RULE_FIELDS, f"relatedResources[{i}].", errors)
        for sel in ("labelSelector", "namespaceSelector"):
            if isinstance(rule.get(sel), dict):
                _check_fields(rule[sel], _SELECTOR_FIELDS, f"relatedResources[{i}].{sel}.",
                              errors)
                for j, expr in enumerate(rule[sel].get("matchExpressions") or []):
                    if isinstance(expr, dict):
                        _check_fields(expr, _EXPRESSION_FIELDS,
                                      f"relatedResources[{i}].{sel}.matchExpressions[{j}].",
                                      errors)
        rules.append(_strip_dupes({k: v for k, v in rule.items() if k in _RULE_FIELDS}, errors))
    if strict and errors:
        raise HookError(f"strict validation failed for v2 webhookResponse: {', '.join(errors)}")
    return rules


def selector_matches(selector: JSON | None, labels: dict[str, str]) -> bool:
    """metav1.LabelSelector semantics (a missing selector matches everything here, as
    Metacontroller's ``toSelector(nil)`` does)."""
    if not selector:
        return True
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        present = key in labels
        if op == "In" and not (present and labels[key] in values):
            return False
        if op == "NotIn" and present and labels[key] in values:
            return False
        if op == "Exists" and not present:
            return False
        if op == "DoesNotExist" and present:
            return False
    return True


def retry_after(value: str, now: float) -> int:
    """Metacontroller: an HTTP date (RFC 1123) → seconds until then, rounded up; else the
    integer; unparsable → 0."""
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        try:
            return int(value)
        except ValueError:
            return 0
    return int(-(-(when - now) // 1))
