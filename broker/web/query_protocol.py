"""The AWS Query protocol, driven by botocore's own service model (the source of truth for
shapes, required parameters and limits): form parameters to a typed request, and a result to
AWS's XML.

Input: ``Name=value`` for scalars, ``Name.member.N`` for lists (N from 1), ``Name.member.N.Sub``
for structures in lists, ``Name.entry.N.key`` / ``.value`` for maps, as botocore's query
serializer writes them. Every constraint the model states is checked here (required, min/max
length and count, numeric range, enum, pattern) and reported as AWS does: ``ValidationError``
naming the member. Output: the response shape, member by member, non-flattened lists as
``<member>``, timestamps in ISO 8601, policy documents URL-encoded as IAM sends them (botocore
decodes them back into dicts).
"""

from __future__ import annotations

import base64
import functools
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote
from xml.sax.saxutils import escape

import botocore.session
from aiohttp import web
from botocore.model import ListShape, MapShape, OperationModel, ServiceModel, Shape, StructureShape

from broker.errors import IamValidationError, StsError

POLICY_DOCUMENT_SHAPE = "policyDocumentType"
MAX_LIST_INDEX = 1000  # no IAM list is longer (tags: 50, client ids: 100, ARNs: 20)


@functools.cache
def service_model(name: str) -> ServiceModel:
    """botocore's model of the service (loaded once per process: it is immutable data)."""
    return botocore.session.get_session().get_service_model(name)


@functools.cache
def _pattern(pattern: str) -> re.Pattern[str] | None:
    try:
        # Java's classes (\w, \d, \s) are ASCII-only, as AWS checks them
        return re.compile(pattern, re.ASCII)
    except re.error:  # a Java-only construct: the length limits still apply
        return None


def _invalid(path: str, message: str) -> IamValidationError:
    return IamValidationError(
        f"invalid_parameter:{path[:80]}",
        public_message=f"1 validation error detected: Value at '{path[:200]}' failed to "
        f"satisfy constraint: {message}",
    )


def _lower_first(name: str) -> str:
    return name[:1].lower() + name[1:]


def _check_string(value: str, shape: Shape, path: str) -> str:
    meta = shape.metadata
    if "min" in meta and len(value) < meta["min"]:
        raise _invalid(path, f"Member must have length greater than or equal to {meta['min']}")
    if "max" in meta and len(value) > meta["max"]:
        raise _invalid(path, f"Member must have length less than or equal to {meta['max']}")
    enum = meta.get("enum")
    if enum and value not in enum:
        raise _invalid(path, f"Member must satisfy enum value set: [{', '.join(enum)}]")
    pattern = meta.get("pattern")
    if pattern:
        compiled = _pattern(pattern)
        if compiled is not None and not compiled.fullmatch(value):
            raise _invalid(path, f"Member must satisfy regular expression pattern: {pattern}")
    return value


def _scalar(value: str, shape: Shape, path: str) -> Any:
    kind = shape.type_name
    if kind == "string":
        return _check_string(value, shape, path)
    if kind in ("integer", "long"):
        try:
            number = int(value, 10)
        except ValueError:
            raise _invalid(path, "Member must be an integer") from None
        meta = shape.metadata
        if "min" in meta and number < meta["min"]:
            raise _invalid(path, f"Member must have value greater than or equal to {meta['min']}")
        if "max" in meta and number > meta["max"]:
            raise _invalid(path, f"Member must have value less than or equal to {meta['max']}")
        return number
    if kind == "boolean":
        if value.lower() not in ("true", "false"):
            raise _invalid(path, "Member must be true or false")
        return value.lower() == "true"
    if kind == "timestamp":
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            raise _invalid(path, "Member must be an ISO 8601 timestamp") from None
    raise _invalid(path, f"Member of type {kind} is not supported")


class _Params:
    """The flat form, looked up by dotted prefix."""

    def __init__(self, flat: Mapping[str, str]) -> None:
        self.flat = flat
        self.prefixes: set[str] = set()
        for key in flat:
            parts = key.split(".")
            for i in range(1, len(parts)):
                self.prefixes.add(".".join(parts[:i]))

    def present(self, key: str) -> bool:
        return key in self.flat or key in self.prefixes


def _decode(params: _Params, key: str, shape: Shape, path: str) -> Any:
    if isinstance(shape, StructureShape):
        return _decode_structure(params, key + ".", shape, path + ".")
    if isinstance(shape, ListShape):
        if key in params.flat and params.flat[key] == "":
            items: list[Any] = []  # ``Name=`` is how the Query protocol sends an empty list
        else:
            items = []
            for i in range(1, MAX_LIST_INDEX + 2):
                item_key = f"{key}.member.{i}"
                if not params.present(item_key):
                    break
                items.append(_decode(params, item_key, shape.member, f"{path}.{i}.member"))
            else:
                raise _invalid(path, f"Member must have length less than {MAX_LIST_INDEX}")
        meta = shape.metadata
        if "min" in meta and len(items) < meta["min"]:
            raise _invalid(path, f"Member must have length greater than or equal to {meta['min']}")
        if "max" in meta and len(items) > meta["max"]:
            raise _invalid(path, f"Member must have length less than or equal to {meta['max']}")
        return items
    if isinstance(shape, MapShape):
        out: dict[str, Any] = {}
        for i in range(1, MAX_LIST_INDEX + 1):
            entry = f"{key}.entry.{i}"
            if not params.present(entry):
                break
            k = _scalar(params.flat.get(entry + ".key", ""), shape.key, f"{path}.{i}.key")
            out[k] = _decode(params, entry + ".value", shape.value, f"{path}.{i}.value")
        return out
    if key not in params.flat:
        return None
    return _scalar(params.flat[key], shape, path)


def _decode_structure(
    params: _Params, prefix: str, shape: StructureShape, path: str
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, member in shape.members.items():
        wire = member.serialization.get("name", name)
        key = prefix + wire
        if not params.present(key):
            continue
        value = _decode(params, key, member, path + _lower_first(name))
        if value is not None:
            out[name] = value
    for name in shape.required_members:
        if name not in out:
            raise IamValidationError(
                f"missing_parameter:{name}",
                public_message=f"1 validation error detected: Value null at "
                f"'{path}{_lower_first(name)}' failed to satisfy constraint: "
                "Member must not be null",
            )
    return out


def decode_request(operation: OperationModel, flat: Mapping[str, str]) -> dict[str, Any]:
    """The operation's parameters from the form (``Action`` and ``Version`` excluded),
    checked against the model; ``IamValidationError`` on the first problem. Parameters the
    model does not know are ignored, as AWS does."""
    shape = operation.input_shape
    if shape is None:
        return {}
    return _decode_structure(_Params(flat), "", shape, "")


# --- output ---------------------------------------------------------------------------------


def _iso(t: float | datetime) -> str:
    when = t if isinstance(t, datetime) else datetime.fromtimestamp(t, UTC)
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _encode(value: Any, shape: Shape) -> str:
    if isinstance(shape, StructureShape):
        return _encode_structure(value, shape)
    if isinstance(shape, ListShape):
        tag = shape.member.serialization.get("name", "member")
        return "".join(f"<{tag}>{_encode(v, shape.member)}</{tag}>" for v in value)
    if isinstance(shape, MapShape):
        return "".join(
            f"<entry><key>{_encode(k, shape.key)}</key><value>{_encode(v, shape.value)}</value>"
            "</entry>"
            for k, v in value.items()
        )
    if shape.type_name == "timestamp":
        return _iso(value)
    if shape.type_name == "boolean":
        return "true" if value else "false"
    if shape.type_name == "blob":  # bytes, base64 on the wire (botocore decodes it)
        return base64.b64encode(bytes(value)).decode("ascii")
    if shape.name == POLICY_DOCUMENT_SHAPE:
        return quote(str(value), safe="")
    enum = shape.metadata.get("enum")
    if enum and value not in enum:  # a programming error, caught by the tests of each action
        raise ValueError(f"{shape.name} has no value {value!r}")
    return escape(str(value))


def _encode_structure(value: Mapping[str, Any], shape: StructureShape) -> str:
    parts = []
    for name, member in shape.members.items():
        if name not in value or value[name] is None:
            continue
        tag = member.serialization.get("name", name)
        parts.append(f"<{tag}>{_encode(value[name], member)}</{tag}>")
    return "".join(parts)


def encode_response(operation: OperationModel, result: Mapping[str, Any], request_id: str) -> str:
    """``<{Op}Response xmlns=...><{Op}Result>...</{Op}Result><ResponseMetadata>...``; members
    the model does not define are a programming error and raise ``KeyError``."""
    ns = operation.service_model.metadata["xmlNamespace"]
    name = operation.name
    shape = operation.output_shape
    unknown = set(result) - set(shape.members if shape is not None else ())
    if unknown:
        raise KeyError(f"{name} has no output members {sorted(unknown)}")
    inner = ""
    if shape is not None:
        wrapper = shape.serialization.get("resultWrapper", f"{name}Result")
        inner = f"<{wrapper}>{_encode_structure(result, shape)}</{wrapper}>"
    return (
        f'<{name}Response xmlns="{ns}">{inner}'
        f"<ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata>"
        f"</{name}Response>"
    )


# --- the HTTP answer ------------------------------------------------------------------------


def xml_response(status: int, body: str, request_id: str) -> web.Response:
    """An AWS Query answer: the XML document, and the ``RequestId`` also as a header."""
    return web.Response(
        status=status,
        body=('<?xml version="1.0" encoding="UTF-8"?>\n' + body).encode("utf-8"),
        content_type="text/xml",
        headers={"x-amzn-RequestId": request_id},
    )


def error_xml(err: StsError, namespace: str, request_id: str) -> web.Response:
    """``<ErrorResponse><Error><Type/><Code/><Message/></Error><RequestId/>`` in the service's
    namespace, with the error's HTTP status (and ``Retry-After`` when the error has one); the
    message is the public one, never the reason."""
    body = (
        f'<ErrorResponse xmlns="{namespace}">'
        f"<Error><Type>{escape(err.sts_type)}</Type><Code>{escape(err.code)}</Code>"
        f"<Message>{escape(err.public_message)}</Message></Error>"
        f"<RequestId>{request_id}</RequestId></ErrorResponse>"
    )
    resp = xml_response(err.status, body, request_id)
    if err.retry_after is not None:
        resp.headers["Retry-After"] = str(max(1, err.retry_after))
    return resp
