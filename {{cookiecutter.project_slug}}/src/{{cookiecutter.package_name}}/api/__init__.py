"""Generated protobuf and gRPC modules (from proto/, by tools/compile_protos.py)."""
