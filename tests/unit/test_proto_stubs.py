"""The committed stubs must be what grpcio-tools makes of the committed .proto."""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STUBS = ["coordinator_pb2.py", "coordinator_pb2.pyi", "coordinator_pb2_grpc.py"]


def test_stubs_match_the_proto(tmp_path: Path) -> None:
    (tmp_path / "ragsync" / "proto").mkdir(parents=True)
    shutil.copy(ROOT / "proto" / "coordinator.proto", tmp_path / "ragsync" / "proto")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "-I.",
            "--python_out=.",
            "--pyi_out=.",
            "--grpc_python_out=.",
            "ragsync/proto/coordinator.proto",
        ],
        cwd=tmp_path,
        check=True,
    )
    for name in STUBS:
        assert (tmp_path / "ragsync" / "proto" / name).read_text() == (ROOT / "proto" / name).read_text(), (
            f"proto/{name} is stale: run `make proto`"
        )


def test_wire_field_numbers() -> None:
    from ragsync.proto import coordinator_pb2

    def numbers(message: object) -> dict[str, int]:
        return {f.name: f.number for f in message.DESCRIPTOR.fields}  # type: ignore[attr-defined]

    assert numbers(coordinator_pb2.RouteRequest) == {"tenant_id": 1, "user_id": 2, "query_text": 3, "metadata": 4}
    assert numbers(coordinator_pb2.RouteResponse) == {
        "target_services": 1,
        "normalized_fields": 2,
        "envelope_json": 3,
        "routing_metadata": 4,
    }
    assert coordinator_pb2.DESCRIPTOR.services_by_name["CoordinatorService"].full_name == "rag.v1.CoordinatorService"
