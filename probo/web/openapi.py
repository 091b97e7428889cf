"""The published contract: the OpenAPI document at /schema, and how it describes errors.

Every route lists the error statuses it can answer with `error_responses(...)`; each is
the one shared `ErrorBody` schema (SPEC §9). Listing 400 replaces litestar's own 400,
which documents its `{status_code, detail, extra}` body that this server never sends.

`PublishedOpenAPIConfig` and `StrictStructSchemaPlugin` finish the document where
litestar's generator does not say what the server does: 429 and 503 carry
`Retry-After`, integer bounds are exact, a oneOf of msgspec tagged structs (the order
request) names its discriminator, and a body that refuses unknown fields says so.
`refuse_unknown_document_paths` keeps litestar's HTML 404 page out of /schema.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import fields
from typing import Any

import msgspec
from litestar import Request
from litestar._openapi.plugin import handle_schema_path_not_found
from litestar._openapi.schema_generation.plugins.struct import StructSchemaPlugin
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.openapi.spec import OpenAPI, Schema
from litestar.typing import FieldDefinition

from probo.web.errors import not_found
from probo.web.storable import BIGINT_MAX

# What each status means on any route; `codes=` adds a route's own codes.
STATUS_CODES: dict[int, tuple[str, str]] = {
    400: ("validation_error", "malformed JSON, or a path or query parameter outside its schema"),
    401: ("unauthorized", "no session, or an invalid, expired or revoked one"),
    403: (
        "forbidden",
        "not allowed: admins only, a cookie-authenticated write from another site, "
        "or a suspended account (code suspended)",
    ),
    404: ("not_found", "no such resource"),
    409: ("conflict", "the resource's state does not allow it"),
    413: ("payload_too_large", "the body is over PROBO_REQUEST_BODY_BYTES_MAX"),
    422: ("validation_error", "the body does not match its schema, or a rule refused it"),
    429: ("rate_limited", "over a rate limit; Retry-After says when to try again"),
    503: (
        "unavailable",
        "the service cannot answer now (Postgres, Redis, the engine or the "
        "ledger writer); Retry-After, when present, says when to try again",
    ),
}
RETRY_AFTER_REQUIRED = {"429": True, "503": False}
ID_MAX_AS_FLOAT = float(BIGINT_MAX)  # what litestar prints for BIGINT_MAX: 2**63, one too many


class ErrorDetail(msgspec.Struct):
    code: str  # stable, machine-readable (SPEC §9)
    message: str  # for people


class ErrorBody(msgspec.Struct):
    """Every error the server answers: `{"error": {"code", "message"}}`."""

    error: ErrorDetail


def error_responses(
    *statuses: int, codes: Mapping[int, str] | None = None
) -> dict[int, ResponseSpec]:
    """The `responses=` of a route: each status with the shared error body."""
    codes = codes or {}
    responses = {}
    for status in statuses:
        code, meaning = STATUS_CODES[status]
        listed = codes.get(status, code)
        responses[status] = ResponseSpec(
            data_container=ErrorBody,
            generate_examples=False,
            description=f"{meaning}. Codes: {listed}.",
        )
    return responses


def repeat_response(model: type, what: str) -> dict[int, ResponseSpec]:
    """The 200 of a create route whose repeat (same key or id) returns the original."""
    return {
        200: ResponseSpec(
            data_container=model,
            generate_examples=False,
            description=f"a repeat of an earlier request: the original {what}",
        )
    }


def refuse_unknown_document_paths(request: Request) -> None:
    """A `before_request` step: under /schema, litestar answers an unknown path with an
    HTML page; this server answers every error with its error body."""
    if request.route_handler.fn is handle_schema_path_not_found:
        raise not_found("page")


class StrictStructSchemaPlugin(StructSchemaPlugin):
    """msgspec structs as litestar documents them, plus `additionalProperties: false` for
    those that refuse unknown fields (every request body)."""

    def to_openapi_schema(self, field_definition: FieldDefinition, schema_creator: Any) -> Schema:
        schema = super().to_openapi_schema(field_definition, schema_creator)
        info = msgspec.inspect.type_info(field_definition.type_)
        if isinstance(info, msgspec.inspect.StructType) and info.forbid_unknown_fields:
            schema.additional_properties = False
        return schema


class PublishedOpenAPI(OpenAPI):
    """The document as litestar builds it, finished by `finish` when it is rendered."""

    def to_schema(self) -> dict[str, Any]:
        return finish(super().to_schema())


class PublishedOpenAPIConfig(OpenAPIConfig):
    def to_openapi_schema(self) -> OpenAPI:
        built = super().to_openapi_schema()
        return PublishedOpenAPI(**{f.name: getattr(built, f.name) for f in fields(built)})


def finish(document: dict[str, Any]) -> dict[str, Any]:
    components = document.get("components", {}).get("schemas", {})
    for node in list(_dicts(document)):
        _exact_integer_bounds(node)
        _name_discriminator(node, components)
    for path_item in document.get("paths", {}).values():
        for operation in path_item.values():
            if isinstance(operation, dict):
                _add_suspended(operation.get("responses", {}))
                _add_retry_after(operation.get("responses", {}))
    return document


def _add_suspended(responses: dict[str, Any]) -> None:
    """Every route that takes a session (it lists 401) answers a suspended user 403."""
    if "401" in responses and "403" not in responses:
        responses["403"] = {
            **responses["401"],
            "description": "the account is suspended. Codes: suspended.",
        }


def _dicts(node: Any) -> Iterator[dict[str, Any]]:
    """Every object in the document, outermost first."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _dicts(value)
    elif isinstance(node, list):
        for item in node:
            yield from _dicts(item)


_BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")


def _exact_integer_bounds(node: dict[str, Any]) -> None:
    """Litestar prints numeric bounds as floats: give integer bounds their exact value."""
    for key in _BOUNDS:
        value = node.get(key)
        if isinstance(value, float) and value.is_integer():
            node[key] = BIGINT_MAX if value == ID_MAX_AS_FLOAT else int(value)


def _tag_of(component: dict[str, Any]) -> tuple[str, Any] | None:
    """(property, value) of the one property a component fixes with `const`: its tag."""
    fixed = [
        (name, schema["const"])
        for name, schema in component.get("properties", {}).items()
        if isinstance(schema, dict) and "const" in schema
    ]
    return fixed[0] if len(fixed) == 1 else None


def _name_discriminator(node: dict[str, Any], components: dict[str, Any]) -> None:
    """A oneOf of components that each fix the same property is discriminated by it."""
    members = node.get("oneOf")
    if not isinstance(members, list) or not members or "discriminator" in node:
        return
    refs = [member.get("$ref") if isinstance(member, dict) else None for member in members]
    tags = [_tag_of(components.get(ref.rsplit("/", 1)[-1], {})) if ref else None for ref in refs]
    properties = {tag[0] for tag in tags if tag is not None}
    if None in tags or len(properties) != 1:
        return
    node["discriminator"] = {
        "propertyName": properties.pop(),
        "mapping": {tag[1]: ref for tag, ref in zip(tags, refs, strict=True) if tag},
    }


def _add_retry_after(responses: dict[str, Any]) -> None:
    for status, required in RETRY_AFTER_REQUIRED.items():
        if status in responses:
            responses[status]["headers"] = {
                "Retry-After": {
                    "description": "seconds to wait before trying again",
                    "required": required,
                    "schema": {"type": "integer", "minimum": 1},
                }
            }
