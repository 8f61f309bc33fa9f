"""Which Ray cluster a directly run job joins, and why (``_runtime._choose_cluster``)."""

import socket

from laps_ray.io.run_manifest import versions
from laps_ray.jobs import _runtime as rt


def _pointer(tmp_path, monkeypatch, port: int) -> None:
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    (tmp_path / "ray").mkdir(exist_ok=True)
    (tmp_path / "ray" / "ray_current_cluster").write_text(f"127.0.0.1:{port}\n")


def test_stale_cluster_pointer_is_ignored(tmp_path, monkeypatch, caplog):
    with socket.socket() as s:  # a port nobody listens on once closed
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    _pointer(tmp_path, monkeypatch, dead)
    target, why = rt._choose_cluster(None)
    assert target == "local" and "no `ray start` cluster" in why
    assert f"127.0.0.1:{dead}" in caplog.text and "ignoring" in caplog.text


def test_live_cluster_pointer_is_followed_and_named(tmp_path, monkeypatch):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        _pointer(tmp_path, monkeypatch, port)
        target, why = rt._choose_cluster(None)
        assert target == f"127.0.0.1:{port}"
        assert "`ray start` cluster on this machine" in why and "ray_current_cluster" in why
        # an explicit choice wins over the pointer
        assert rt._choose_cluster("local") == ("local", "--address local")
        assert rt._choose_cluster("10.0.0.5:6379") == ("10.0.0.5:6379", "--address")
        monkeypatch.setenv("RAY_ADDRESS", "http://10.0.0.9:8265")
        target, why = rt._choose_cluster(None)
        assert target == "http://10.0.0.9:8265" and "RAY_ADDRESS" in why


def test_no_pointer_means_a_private_local_ray(tmp_path, monkeypatch):
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert rt._choose_cluster(None)[0] == "local"


def test_versions_name_every_result_changing_package():
    v = versions()
    assert set(v) >= {"ray", "torch", "numpy", "av", "cv2", "h5py", "vector_quantize_pytorch"}
    assert "unknown" not in v.values() and "not installed" not in v.values()
