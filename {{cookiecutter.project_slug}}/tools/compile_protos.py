"""Compiles proto/ into src/{{ cookiecutter.package_name }}/api/ with grpcio-tools.

The protos are compiled from a copy laid out under the package path, so the generated modules
import each other as `{{ cookiecutter.package_name }}.api....` and need no sys.path tricks.
Run it after editing a .proto: `make proto`.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

PACKAGE = "{{ cookiecutter.package_name }}"
ROOT = Path(__file__).resolve().parent.parent
PROTO = ROOT / "proto"
SRC = ROOT / "src"


def googleapis_protos() -> Path | None:
    """Where google/api/*.proto are: googleapis-common-protos ships them beside its modules."""
    try:
        from google.api import annotations_pb2
    except ImportError:
        return None
    root = Path(annotations_pb2.__file__).resolve().parents[2]
    return root if (root / "google" / "api" / "annotations.proto").is_file() else None


def main() -> int:
    try:
        import grpc_tools
        from grpc_tools import protoc
    except ImportError:
        print("grpcio-tools is not installed; run `pip install grpcio-tools`", file=sys.stderr)
        return 1
    protos = sorted(PROTO.rglob("*.proto")) if PROTO.is_dir() else []
    if not protos:  # a project without the sample starts with no API of its own
        print(f"no .proto files under {PROTO}: nothing to compile")
        return 0
    include = Path(grpc_tools.__file__).parent / "_proto"
    googleapis = googleapis_protos()
    if googleapis is None:
        print("googleapis-common-protos is not installed (google/api/annotations.proto); run "
              "`pip install googleapis-common-protos`", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / PACKAGE / "api"
        shutil.copytree(PROTO, staged)
        files = [str(p.relative_to(tmp)) for p in sorted(staged.rglob("*.proto"))]
        args = [
            "grpc_tools.protoc", f"-I{tmp}", f"-I{include}", f"-I{googleapis}",
            f"--python_out={SRC}", f"--grpc_python_out={SRC}", f"--pyi_out={SRC}", *files,
        ]
        if protoc.main(args) != 0:
            print("protoc failed; see the messages above", file=sys.stderr)
            return 1
    api = SRC / PACKAGE / "api"
    for directory in [api, *[p for p in api.rglob("*") if p.is_dir()]]:
        if directory.name != "__pycache__":
            (directory / "__init__.py").touch()
    print(f"compiled {len(protos)} proto file(s) into {api.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
