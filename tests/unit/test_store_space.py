"""The store's disk watch: under the floor it names the path, the free space and the setting."""

from pathlib import Path

from prometheus_client import REGISTRY

from ragsync.store.space import MB, StoreSpace


def test_space_under_the_floor_is_a_shortage_that_names_the_setting(tmp_path: Path) -> None:
    free = {"bytes": 100 * MB}
    asked: list[Path] = []

    def disk(path: Path) -> int:
        asked.append(path)
        return free["bytes"]

    space = StoreSpace(tmp_path / "not" / "yet" / "made", 64 * MB, disk)
    assert space.shortage() is None and asked[-1] == tmp_path  # the nearest folder that exists
    free["bytes"] = 10 * MB
    shortage = space.shortage()
    assert shortage is not None and "has 10 MB free, under STORE_MIN_FREE_MB=64" in shortage
    assert REGISTRY.get_sample_value("ragsync_store_free_bytes") == 10 * MB
    assert REGISTRY.get_sample_value("ragsync_store_min_free_bytes") == 64 * MB
