"""Proto messages ↔ JSON for the REST gateway, and their JSON Schemas, both read off the descriptors.

Field names are the proto's (snake_case). Output differs from protobuf's canonical JSON mapping in one
way: 64-bit integers are JSON numbers, not strings (event ids and byte counts stay far below 2^53).
Input goes through json_format.ParseDict, so every range and type check is protobuf's own, and an
unknown field is an error (a typo never silently does nothing).
"""
from __future__ import annotations

import base64
import math

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from solo.errors import InvalidRequest

F = FieldDescriptor
_INT_RANGES = {
    F.TYPE_INT32: (-2**31, 2**31 - 1), F.TYPE_SINT32: (-2**31, 2**31 - 1), F.TYPE_SFIXED32: (-2**31, 2**31 - 1),
    F.TYPE_UINT32: (0, 2**32 - 1), F.TYPE_FIXED32: (0, 2**32 - 1),
    F.TYPE_INT64: (-2**63, 2**63 - 1), F.TYPE_SINT64: (-2**63, 2**63 - 1), F.TYPE_SFIXED64: (-2**63, 2**63 - 1),
    F.TYPE_UINT64: (0, 2**64 - 1), F.TYPE_FIXED64: (0, 2**64 - 1),
}
_FLOATS = (F.TYPE_DOUBLE, F.TYPE_FLOAT)


def _is_map(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


def _is_repeated(field: FieldDescriptor) -> bool:
    return field.is_repeated


def _scalar_out(field: FieldDescriptor, value):
    if field.type == F.TYPE_BYTES:
        return base64.b64encode(value).decode("ascii")
    if field.type in _FLOATS and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if field.type == F.TYPE_MESSAGE:
        return to_dict(value)
    return value


def to_dict(message) -> dict:
    """Every field of `message` (defaults included, so a client sees the whole shape), a oneof's unset
    members and unset proto3 `optional` fields left out."""
    out = {}
    for field in message.DESCRIPTOR.fields:
        value = getattr(message, field.name)
        if _is_map(field):
            value_field = field.message_type.fields_by_name["value"]
            out[field.name] = {k: _scalar_out(value_field, v) for k, v in value.items()}
        elif _is_repeated(field):
            out[field.name] = [_scalar_out(field, v) for v in value]
        elif field.containing_oneof is not None and not message.HasField(field.name):
            continue
        else:
            out[field.name] = _scalar_out(field, value)
    return out


def from_dict(data: dict, message_class, where: str = "the request body"):
    """`data` parsed into a new `message_class`; InvalidRequest naming the field that does not fit."""
    message = message_class()
    try:
        json_format.ParseDict(data, message, ignore_unknown_fields=False, max_recursion_depth=64)
    except (json_format.ParseError, ValueError, TypeError, RecursionError) as exc:
        name = message_class.DESCRIPTOR.name
        raise InvalidRequest(f"{where} does not fit {name}: {str(exc)[:300]}; see /openapi.json for its "
                             "fields") from None
    return message


def field_at(descriptor: Descriptor, path: str) -> FieldDescriptor:
    """The field at a dotted path ("filter.after_id")."""
    *parents, leaf = path.split(".")
    for part in parents:
        descriptor = descriptor.fields_by_name[part].message_type
    return descriptor.fields_by_name[leaf]


def query_value(field: FieldDescriptor, values: list[str], name: str):
    """A query parameter's text(s) as the JSON value for `field` (ranges are checked by from_dict)."""
    def one(text: str):
        if field.type in _INT_RANGES:
            try:
                return int(text)
            except ValueError:
                raise InvalidRequest(f"query parameter {name}={text[:64]!r} is not an integer") from None
        if field.type in _FLOATS:
            try:
                number = float(text)
            except ValueError:
                raise InvalidRequest(f"query parameter {name}={text[:64]!r} is not a number") from None
            if not math.isfinite(number):
                raise InvalidRequest(f"query parameter {name} must be a finite number")
            return number
        if field.type == F.TYPE_BOOL:
            if text.lower() not in ("true", "false", "1", "0"):
                raise InvalidRequest(f"query parameter {name}={text[:64]!r} is not true or false")
            return text.lower() in ("true", "1")
        return text

    if _is_map(field):
        pairs = {}
        for text in values:
            key, sep, value = text.partition("=")
            if not sep:
                raise InvalidRequest(f"query parameter {name}={text[:64]!r} must be key=value")
            pairs[key] = value
        return pairs
    if _is_repeated(field):
        return [one(v) for v in values]
    if len(values) > 1:
        raise InvalidRequest(f"query parameter {name} is given {len(values)} times; give it once")
    return one(values[0])


def set_path(data: dict, path: str, value) -> None:
    *parents, leaf = path.split(".")
    for part in parents:
        inner = data.setdefault(part, {})
        if not isinstance(inner, dict):
            raise InvalidRequest(f"{part} must be a JSON object")
        data = inner
    data[leaf] = value


# --- JSON Schema (OpenAPI 3.1) ---

def field_schema(field: FieldDescriptor) -> dict:
    if _is_map(field):
        return {"type": "object", "additionalProperties": _value_schema(field.message_type.fields_by_name["value"])}
    if _is_repeated(field):
        return {"type": "array", "items": _value_schema(field)}
    return _value_schema(field)


def _value_schema(field: FieldDescriptor) -> dict:
    if field.type == F.TYPE_MESSAGE:
        return {"$ref": f"#/components/schemas/{field.message_type.name}"}
    if field.type in _INT_RANGES:
        low, high = _INT_RANGES[field.type]
        return {"type": "integer", "minimum": low, "maximum": high}
    if field.type in _FLOATS:
        return {"type": "number"}
    if field.type == F.TYPE_BOOL:
        return {"type": "boolean"}
    if field.type == F.TYPE_BYTES:
        return {"type": "string", "contentEncoding": "base64"}
    return {"type": "string"}


def message_schema(descriptor: Descriptor, leave_out: tuple[str, ...] = (), output: bool = False) -> dict:
    """The JSON Schema of a message. Inputs refuse unknown fields; outputs list every field they always carry."""
    properties = {f.name: field_schema(f) for f in descriptor.fields if f.name not in leave_out}
    schema = {"type": "object", "properties": properties}
    if output:
        schema["required"] = [f.name for f in descriptor.fields if f.containing_oneof is None]
    else:
        schema["additionalProperties"] = False
        oneofs = [[f.name for f in o.fields] for o in descriptor.oneofs if len(o.fields) > 1]
        if oneofs:  # a oneof: at most one of its members
            schema["not"] = {"anyOf": [{"required": [a, b]} for names in oneofs
                                       for i, a in enumerate(names) for b in names[i + 1:]]}
    return schema


def messages_below(descriptor: Descriptor, seen: dict | None = None) -> dict[str, Descriptor]:
    """`descriptor` and every message type its fields reach (map entries excepted), by name."""
    seen = {} if seen is None else seen
    if descriptor.name in seen:
        return seen
    seen[descriptor.name] = descriptor
    for field in descriptor.fields:
        if field.message_type is None:
            continue
        if _is_map(field):
            value = field.message_type.fields_by_name["value"]
            if value.message_type is not None:
                messages_below(value.message_type, seen)
        else:
            messages_below(field.message_type, seen)
    return seen
