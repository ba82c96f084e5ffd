"""The routes of a service, read from its methods' `google.api.http` options.

An `HttpRule` (google/api/http.proto) names a verb and a path template, e.g.
`post: "/v1/reports/{report_id}" body: "*"`. The template grammar is:

    Template = "/" Segments [ Verb ] ;   Segments = Segment { "/" Segment } ;
    Segment  = "*" | "**" | LITERAL | Variable ;   Verb = ":" LITERAL ;
    Variable = "{" FieldPath [ "=" Segments ] "}" ;

Each rule becomes a `Route` holding a compiled regular expression whose named groups are the
variables (their field paths, `a.b` for a nested field). Rules with `additional_bindings`
become one route each. A method without the option has no HTTP route.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import unquote

from google.api import annotations_pb2, http_pb2
from google.protobuf.descriptor import FieldDescriptor, MethodDescriptor, ServiceDescriptor

VERBS = ("get", "put", "post", "delete", "patch")


class RuleError(ValueError):
    """A `google.api.http` rule that cannot be served (the message names the method)."""


@dataclass(frozen=True)
class Route:
    verb: str  # upper case: GET, POST, ...
    template: str  # as written in the proto, e.g. /v1/reports/{report_id}
    method: MethodDescriptor
    body: str  # "" (no body), "*" (the whole request) or a top-level field name
    response_body: str  # "" (the whole response) or a top-level field name of the response
    pattern: re.Pattern[str]
    variables: dict[str, str] = field(default_factory=dict)  # group name -> field path

    @property
    def rpc(self) -> str:
        """`/package.Service/Method`: how gRPC (and its spans) name the method."""
        return f"/{self.method.containing_service.full_name}/{self.method.name}"

    def match(self, path: str) -> dict[str, str] | None:
        """The variables' values (field path -> text, percent-decoded) when `path` matches.

        `path` is the raw (still percent-encoded) path, so an encoded '/' stays in its segment.
        """
        found = self.pattern.fullmatch(path)
        if found is None:
            return None
        return {self.variables[name]: unquote(value) for name, value in found.groupdict().items()}


def routes_of(service: ServiceDescriptor) -> list[Route]:
    """Every route of the service's annotated methods, in the order of the proto."""
    routes: list[Route] = []
    for method in service.methods:
        options = method.GetOptions()
        if not options.HasExtension(annotations_pb2.http):
            continue
        if method.client_streaming or method.server_streaming:
            raise RuleError(f"{method.full_name}: HTTP/JSON serves unary methods only; remove "
                            "its google.api.http option or make it unary")
        rule = options.Extensions[annotations_pb2.http]
        for binding in [rule, *rule.additional_bindings]:
            routes.append(_route(method, binding))
    return routes


def _route(method: MethodDescriptor, rule: http_pb2.HttpRule) -> Route:
    kind = rule.WhichOneof("pattern")
    if kind is None:
        raise RuleError(f"{method.full_name}: its google.api.http rule has no verb and path")
    if kind == "custom":
        verb, template = rule.custom.kind.upper(), rule.custom.path
    else:
        verb, template = kind.upper(), getattr(rule, kind)
    pattern, variables = compile_template(template, method.full_name)
    for path in variables.values():
        leaf = resolve_field(method.input_type, path)
        if leaf is None or leaf.type == FieldDescriptor.TYPE_MESSAGE or repeated(leaf):
            raise RuleError(f"{method.full_name}: the path variable {{{path}}} must name a "
                            f"singular scalar field of {method.input_type.full_name}")
    _check_body_field(method, rule.body, method.input_type.fields_by_name, "body")
    _check_body_field(method, rule.response_body, method.output_type.fields_by_name,
                      "response_body")
    return Route(verb, template, method, rule.body, rule.response_body, pattern, variables)


def _check_body_field(
    method: MethodDescriptor, name: str, fields: dict[str, FieldDescriptor], option: str
) -> None:
    if name and name != "*" and name not in fields:
        raise RuleError(f"{method.full_name}: {option} {name!r} is not a top-level field")


_SEGMENT = r"[^/]+"


def compile_template(template: str, where: str) -> tuple[re.Pattern[str], dict[str, str]]:
    """The template as a regular expression, and its group names -> field paths."""
    if not template.startswith("/"):
        raise RuleError(f"{where}: the path {template!r} must start with '/'")
    verb = ""
    last = template.rsplit("/", 1)[-1]
    if ":" in last and "}" not in last.split(":", 1)[1]:  # a trailing ":verb", not in a {..}
        template, verb = template[: template.rfind(":")], template[template.rfind(":"):]
    variables: dict[str, str] = {}
    parts: list[str] = []
    for token in re.split(r"(\{[^}]*\})", template[1:]):
        if token.startswith("{"):
            path, _, sub = token[1:-1].partition("=")
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*", path):
                raise RuleError(f"{where}: {token} in {template!r} is not a field path")
            name = f"v{len(variables)}"
            variables[name] = path
            parts.append(f"(?P<{name}>{_segments(sub, where) if sub else _SEGMENT})")
        elif "{" in token or "}" in token:
            raise RuleError(f"{where}: unbalanced braces in {template!r}")
        else:
            parts.append(_literal_segments(token, where))
    return re.compile("/" + "".join(parts) + re.escape(verb)), variables


def _segments(segments: str, where: str) -> str:
    out = []
    for segment in segments.split("/"):
        if segment == "*":
            out.append(_SEGMENT)
        elif segment == "**":
            out.append(".+")
        elif segment and "*" not in segment:
            out.append(re.escape(segment))
        else:
            raise RuleError(f"{where}: {segment!r} is not a path segment")
    return "/".join(out)


def _literal_segments(token: str, where: str) -> str:
    # a run of literal, "*" and "**" segments between variables (slashes kept as written)
    return "/".join(
        _segments(piece, where) if piece in ("*", "**") else re.escape(piece)
        for piece in token.split("/")
    )


def resolve_field(message: object, path: str) -> FieldDescriptor | None:
    """The field a dotted path names in a message descriptor, or None."""
    descriptor = message
    leaf: FieldDescriptor | None = None
    for name in path.split("."):
        if descriptor is None:
            return None
        leaf = descriptor.fields_by_name.get(name)  # type: ignore[attr-defined]
        if leaf is None:
            return None
        descriptor = leaf.message_type
    return leaf


def repeated(field_descriptor: FieldDescriptor) -> bool:
    if hasattr(field_descriptor, "is_repeated"):  # protobuf >= 6: `label` is deprecated
        return bool(field_descriptor.is_repeated)
    return bool(field_descriptor.label == FieldDescriptor.LABEL_REPEATED)


def routes_for(services: Iterable[ServiceDescriptor]) -> list[Route]:
    routes = [route for service in services for route in routes_of(service)]
    seen: dict[tuple[str, str], Route] = {}
    for route in routes:
        key = (route.verb, route.pattern.pattern)
        if key in seen:
            raise RuleError(f"{route.method.full_name} and {seen[key].method.full_name} both "
                            f"answer {route.verb} {route.template}; give one another path")
        seen[key] = route
    return routes
