"""Encoding published messages and decoding delivered ones by the handler's annotation.

Supported types, both ways: protobuf messages, pydantic models, dataclasses, dict (JSON) and
bytes. The decoder for a handler is built once, at subscribe time, so the hot path is a
single call.

Protobuf payloads name their message type in the content type
(`application/x-protobuf; proto=events.v1.RealTimeWarehousingData`): protobuf's wire format
does not, and parses almost any bytes as almost any message, so a subscriber refuses (as a
decode error) a payload whose content type names another type. This costs no extra header
(the content type is sent anyway, and NATS core leaves it out of an otherwise header-less
message). A payload without the name (another producer, an older one, plain
`application/x-protobuf` or no content type) is parsed as before. Fields the subscriber does
not know (a newer producer's) are accepted: kept as unknown fields in binary, skipped in JSON.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import inspect
import json
import typing
from collections.abc import Callable
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError as ProtobufDecodeError
from google.protobuf.message import Message as ProtobufMessage

from brokerline.core.errors import DecodeError

try:  # pydantic is optional: only needed when a handler takes a pydantic model
    import pydantic
except ImportError:  # pragma: no cover - pydantic is a dependency of the generated project
    pydantic = None  # type: ignore[assignment]

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
OCTET_STREAM = "application/octet-stream"

Decoder = Callable[[bytes, str | None], Any]


def _is_pydantic_model(tp: Any) -> bool:
    return pydantic is not None and inspect.isclass(tp) and issubclass(tp, pydantic.BaseModel)


Encoder = Callable[[Any], tuple[bytes, str]]


class Codec:
    """Turns Python objects into bytes for the wire and back."""

    def __init__(self) -> None:
        self._encoders: dict[type, Encoder] = {}  # chosen once per message type

    def encode(self, msg: Any) -> tuple[bytes, str]:
        """Return the payload and its content type."""
        encoder = self._encoders.get(type(msg))
        if encoder is None:
            encoder = self._encoders[type(msg)] = _encoder_for(msg)
        return encoder(msg)

    def decoder_for(self, handler: Callable[..., Any]) -> Decoder:
        """Build the decoder that the handler's first parameter annotation asks for."""
        return self.decoder_for_type(message_type_of(handler))

    def decoder_for_type(self, tp: Any) -> Decoder:
        if tp is bytes or tp is Any or tp is inspect.Parameter.empty:
            return lambda payload, _ct: payload
        if inspect.isclass(tp) and issubclass(tp, ProtobufMessage):
            return _protobuf_decoder(tp)
        if _is_pydantic_model(tp):
            return _pydantic_decoder(tp)
        if inspect.isclass(tp) and dataclasses.is_dataclass(tp):
            return _dataclass_decoder(tp)
        if tp is dict or typing.get_origin(tp) is dict:
            return _dict_decoder
        raise TypeError(
            f"a handler cannot take a {tp!r}; annotate its first parameter with bytes, dict, "
            "a dataclass, a pydantic model or a protobuf message class"
        )


def _encoder_for(msg: Any) -> Encoder:
    if isinstance(msg, bytes | bytearray | memoryview):
        return lambda m: (bytes(m), OCTET_STREAM)
    if isinstance(msg, ProtobufMessage):
        content_type = protobuf_content_type(type(msg))
        return lambda m: (m.SerializeToString(), content_type)
    if pydantic is not None and isinstance(msg, pydantic.BaseModel):
        # the model's serializer gives the bytes `model_dump_json` would give as text (the
        # same JSON, without a decode and an encode per message)
        to_json = type(msg).__pydantic_serializer__.to_json
        return lambda m: (to_json(m), JSON)
    if dataclasses.is_dataclass(msg) and not isinstance(msg, type):
        return lambda m: (_json(dataclasses.asdict(m)), JSON)
    if isinstance(msg, dict | list | str | int | float | bool):
        return lambda m: (_json(m), JSON)
    raise TypeError(
        f"cannot encode a {type(msg).__name__}; publish bytes, a dict, a dataclass, "
        "a pydantic model or a protobuf message"
    )


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def message_type_of(handler: Callable[..., Any]) -> Any:
    """The annotation of the handler's first parameter (bytes when it has none)."""
    params = list(inspect.signature(handler).parameters.values())
    if not params:
        raise TypeError(f"handler {handler!r} must take (message, context)")
    try:
        hints = typing.get_type_hints(handler)
    except Exception:  # unresolvable forward references: fall back to the raw annotation
        hints = {}
    tp = hints.get(params[0].name, params[0].annotation)
    return bytes if tp is inspect.Parameter.empty else tp


def batch_item_type(handler: Callable[..., Any]) -> Any:
    """The item type of a batch handler's first parameter, `list[T]` (bytes when bare)."""
    tp = message_type_of(handler)
    if tp is bytes:  # no annotation
        return bytes
    origin = typing.get_origin(tp)
    if origin not in (list, collections.abc.Sequence):
        raise TypeError(
            f"a batch handler takes a list of messages; annotate {_handler_name(handler)}'s "
            f"first parameter as list[T] (T: bytes, dict, a dataclass, a pydantic model or a "
            f"protobuf message class), not {tp!r}"
        )
    args = typing.get_args(tp)
    return args[0] if args else bytes


def _handler_name(handler: Callable[..., Any]) -> str:
    return getattr(handler, "__qualname__", repr(handler))


def _json_object(payload: bytes) -> Any:
    try:
        return json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DecodeError(f"payload is not valid JSON: {exc}") from exc


def _dict_decoder(payload: bytes, _content_type: str | None) -> Any:
    value = _json_object(payload)
    if not isinstance(value, dict):
        raise DecodeError(f"expected a JSON object, got {type(value).__name__}")
    return value


def protobuf_content_type(cls: type[ProtobufMessage]) -> str:
    """The content type of a protobuf message of `cls`, naming its full type name."""
    return f"{PROTOBUF}; proto={cls.DESCRIPTOR.full_name}"


def named_protobuf_type(content_type: str) -> str | None:
    """The message type a protobuf content type names (None when it names none)."""
    media_type, _, parameters = content_type.partition(";")
    if media_type.strip().lower() != PROTOBUF:
        return None
    for parameter in parameters.split(";"):
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "proto":
            return value.strip().strip('"') or None
    return None


def _protobuf_decoder(cls: type[ProtobufMessage]) -> Decoder:
    full_name = cls.DESCRIPTOR.full_name
    own_content_type = protobuf_content_type(cls)

    def decode(payload: bytes, content_type: str | None) -> Any:
        if content_type and content_type != own_content_type and ";" in content_type:
            named = named_protobuf_type(content_type)
            if named is not None and named != full_name:
                raise DecodeError(f"payload is a {named}, not a {full_name}")
        msg = cls()
        try:
            if content_type == JSON:
                # a newer producer's fields are skipped, as binary parsing does
                json_format.Parse(payload, msg, ignore_unknown_fields=True)
            else:
                msg.ParseFromString(payload)
        except (ProtobufDecodeError, json_format.ParseError, UnicodeDecodeError) as exc:
            raise DecodeError(f"payload is not a valid {cls.DESCRIPTOR.full_name}: {exc}") from exc
        return msg

    return decode


def _pydantic_decoder(cls: Any) -> Decoder:
    # the model's validator itself (what `model_validate_json` calls, one frame less per
    # message); a model not complete yet (forward references) goes through the classmethod,
    # which builds it
    validate = (
        cls.__pydantic_validator__.validate_json if cls.__pydantic_complete__
        else cls.model_validate_json
    )

    def decode(payload: bytes, _content_type: str | None) -> Any:
        try:
            return validate(payload)
        except pydantic.ValidationError as exc:
            raise DecodeError(
                f"payload is not a valid {cls.__name__}: {_validation_problems(exc)}"
            ) from exc

    return decode


def _validation_problems(exc: pydantic.ValidationError) -> str:
    """Each refused field and why, without the input: `str(exc)` quotes the payload's values,
    and this text goes into logs and dead-letter headers."""
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc']) or '(message)'}: {error['msg']}"
        for error in exc.errors(include_url=False, include_context=False, include_input=False)
    )


def _dataclass_decoder(cls: Any) -> Decoder:
    def decode(payload: bytes, _content_type: str | None) -> Any:
        value = _dict_decoder(payload, None)
        try:
            return cls(**value)
        except TypeError as exc:
            raise DecodeError(f"payload is not a valid {cls.__name__}: {exc}") from exc

    return decode
