"""A test-only proto service with google.api.http rules, built as a descriptor (no protoc).

`things.v1.ThingService` covers the rule shapes: GET with a path variable and query
parameters, POST `body: "*"`, PATCH with a nested path variable and `body: "thing"`, DELETE,
a custom verb, `response_body`, and one method with no HTTP rule. `ThingServicer` is a
grpc.aio-style servicer for it: `async def Method(request, context)`.
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
from google.api import annotations_pb2  # noqa: F401 - the google.api.http extension
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import Message

FILE = """
name: "things/v1/things_test.proto"
package: "things.v1"
syntax: "proto3"
dependency: "google/api/annotations.proto"
message_type {
  name: "Inner"
  field { name: "key" number: 1 type: TYPE_STRING label: LABEL_OPTIONAL json_name: "key" }
}
message_type {
  name: "Thing"
  field { name: "thing_id" number: 1 type: TYPE_STRING label: LABEL_OPTIONAL json_name: "thingId" }
  field { name: "name" number: 2 type: TYPE_STRING label: LABEL_OPTIONAL json_name: "name" }
  field { name: "size" number: 3 type: TYPE_INT64 label: LABEL_OPTIONAL json_name: "size" }
  field { name: "active" number: 4 type: TYPE_BOOL label: LABEL_OPTIONAL json_name: "active" }
  field { name: "tags" number: 5 type: TYPE_STRING label: LABEL_REPEATED json_name: "tags" }
  field { name: "inner" number: 6 type: TYPE_MESSAGE label: LABEL_OPTIONAL
          type_name: ".things.v1.Inner" json_name: "inner" }
  field { name: "count" number: 7 type: TYPE_INT32 label: LABEL_OPTIONAL json_name: "count" }
}
message_type {
  name: "UpdateThingRequest"
  field { name: "thing" number: 1 type: TYPE_MESSAGE label: LABEL_OPTIONAL
          type_name: ".things.v1.Thing" json_name: "thing" }
  field { name: "mask" number: 2 type: TYPE_STRING label: LABEL_OPTIONAL json_name: "mask" }
}
message_type {
  name: "ThingReply"
  field { name: "thing" number: 1 type: TYPE_MESSAGE label: LABEL_OPTIONAL
          type_name: ".things.v1.Thing" json_name: "thing" }
  field { name: "note" number: 2 type: TYPE_STRING label: LABEL_OPTIONAL json_name: "note" }
}
message_type {
  name: "FailRequest"
  field { name: "code" number: 1 type: TYPE_STRING label: LABEL_OPTIONAL json_name: "code" }
}
service {
  name: "ThingService"
  method { name: "GetThing" input_type: ".things.v1.Thing" output_type: ".things.v1.ThingReply"
           options { [google.api.http] { get: "/v1/things/{thing_id}" } } }
  method { name: "CreateThing" input_type: ".things.v1.Thing" output_type: ".things.v1.ThingReply"
           options { [google.api.http] { post: "/v1/things" body: "*"
                     additional_bindings { put: "/v1/things" body: "*" } } } }
  method { name: "UpdateThing" input_type: ".things.v1.UpdateThingRequest"
           output_type: ".things.v1.ThingReply"
           options { [google.api.http] { patch: "/v1/things/{thing.thing_id}" body: "thing" } } }
  method { name: "DeleteThing" input_type: ".things.v1.Thing" output_type: ".things.v1.ThingReply"
           options { [google.api.http] { delete: "/v1/{thing_id=shelves/*/things/*}" } } }
  method { name: "RenameThing" input_type: ".things.v1.Thing" output_type: ".things.v1.ThingReply"
           options { [google.api.http] { post: "/v1/things/{thing_id}:rename" body: "*"
                                         response_body: "thing" } } }
  method { name: "Fail" input_type: ".things.v1.FailRequest" output_type: ".things.v1.ThingReply"
           options { [google.api.http] { post: "/v1/fail/{code}" } } }
  method { name: "GrpcOnly" input_type: ".things.v1.Thing" output_type: ".things.v1.ThingReply" }
}
"""


def _load() -> Any:
    pool = descriptor_pool.Default()
    try:
        return pool.FindFileByName("things/v1/things_test.proto")
    except KeyError:
        proto = text_format.Parse(FILE, descriptor_pb2.FileDescriptorProto())
        return pool.Add(proto)


FILE_DESCRIPTOR = _load()
SERVICE: ServiceDescriptor = FILE_DESCRIPTOR.services_by_name["ThingService"]


def message(name: str) -> type[Message]:
    return message_factory.GetMessageClass(FILE_DESCRIPTOR.message_types_by_name[name])


Thing, ThingReply = message("Thing"), message("ThingReply")


class ThingServicer:
    """Echoes what it was given; `Fail` aborts with the status named in the path."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Message, Any]] = []

    async def GetThing(self, request: Any, context: Any) -> Any:  # noqa: N802
        self.calls.append(("GetThing", request, context))
        return ThingReply(thing=request, note="got")

    async def CreateThing(self, request: Any, context: Any) -> Any:  # noqa: N802
        self.calls.append(("CreateThing", request, context))
        return ThingReply(thing=request, note="created")

    async def UpdateThing(self, request: Any, context: Any) -> Any:  # noqa: N802
        self.calls.append(("UpdateThing", request, context))
        return ThingReply(thing=request.thing, note=f"updated {request.mask}")

    async def DeleteThing(self, request: Any, context: Any) -> Any:  # noqa: N802
        self.calls.append(("DeleteThing", request, context))
        return ThingReply(note=f"deleted {request.thing_id}")

    async def RenameThing(self, request: Any, context: Any) -> Any:  # noqa: N802
        self.calls.append(("RenameThing", request, context))
        return ThingReply(thing=request, note="not in the answer: response_body is thing")

    async def Fail(self, request: Any, context: Any) -> Any:  # noqa: N802
        self.calls.append(("Fail", request, context))
        if request.code == "set_code":  # the other way a servicer fails a call
            context.set_code(grpc.StatusCode.NOT_FOUND)
            context.set_details("no such thing (set_code)")
            return ThingReply()
        if request.code == "slow":  # in flight while the server stops
            await asyncio.sleep(0.5)
            return ThingReply(note="finished")
        if request.code == "bug":
            raise RuntimeError("a bug in the servicer")
        if request.code == "unimplemented":  # what a generated *Servicer base class does
            context.set_code(grpc.StatusCode.UNIMPLEMENTED)
            context.set_details("Method not implemented!")
            raise NotImplementedError("Method not implemented!")
        await context.abort(grpc.StatusCode[request.code], f"aborted with {request.code}")
        return ThingReply()

    async def GrpcOnly(self, request: Any, context: Any) -> Any:  # noqa: N802
        return ThingReply()
