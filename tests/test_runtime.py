import socket

from laps_ray.jobs import _runtime as rt


def _pointer(tmp_path, monkeypatch, port: int) -> None:
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    (tmp_path / "ray").mkdir(exist_ok=True)
    (tmp_path / "ray" / "ray_current_cluster").write_text(f"127.0.0.1:{port}\n")


def test_stale_cluster_pointer_is_detected(tmp_path, monkeypatch):
    with socket.socket() as s:  # a port nobody listens on once closed
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    _pointer(tmp_path, monkeypatch, dead)
    assert rt._stale_local_cluster() is True


def test_live_cluster_pointer_is_followed(tmp_path, monkeypatch):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        _pointer(tmp_path, monkeypatch, server.getsockname()[1])
        assert rt._stale_local_cluster() is False


def test_no_pointer_means_nothing_to_ignore(tmp_path, monkeypatch):
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    assert rt._stale_local_cluster() is False
