"""Serve a video file as a live stream on 127.0.0.1 with the ``ffmpeg`` command (tests only).

``HttpVideoServer`` runs ``ffmpeg -re -i FILE -c copy -f mpegts -listen 1 http://127.0.0.1:PORT/live.ts``:
frames leave at their real-time pace, one client is served, and :meth:`kill` drops the connection the
way a crashed camera server would. :meth:`start` again on the same port brings it back.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
from pathlib import Path


def ffmpeg_path() -> str | None:
    """The ``ffmpeg`` executable, or None when it is not installed."""
    return shutil.which("ffmpeg")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class HttpVideoServer:
    """One restartable ffmpeg process serving ``video`` as MPEG-TS over HTTP on loopback."""

    def __init__(self, video: str | Path, port: int | None = None) -> None:
        self.video = Path(video)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/live.ts"
        self.proc: subprocess.Popen | None = None

    def start(self) -> HttpVideoServer:
        exe = ffmpeg_path()
        if exe is None:
            raise RuntimeError("ffmpeg is not installed")
        self.kill()
        cmd = [exe, "-hide_banner", "-loglevel", "error", "-nostdin", "-re", "-i", str(self.video)]
        cmd += ["-c", "copy", "-f", "mpegts", "-listen", "1", self.url]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._wait_listening()
        return self

    def _wait_listening(self, timeout: float = 10.0) -> None:
        """Until the port accepts connections (a probe connection would consume ffmpeg's one client, so
        this only looks for its socket in /proc/net/tcp)."""
        import time

        table = Path("/proc/net/tcp")
        if not table.exists():  # not Linux: give ffmpeg a moment instead
            time.sleep(1.0)
            return
        deadline = time.monotonic() + timeout
        local = f":{self.port:04X}"
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"ffmpeg exited with {self.proc.returncode} before listening")
            rows = [line.split() for line in table.read_text().splitlines()[1:]]
            # 0A = LISTEN; 01 = ESTABLISHED: a waiting client may be accepted between two polls
            if any(r[1].endswith(local) and r[3] in ("0A", "01") for r in rows if len(r) > 3):
                return
            time.sleep(0.05)
        raise RuntimeError(f"ffmpeg did not listen on port {self.port} within {timeout}s")

    def kill(self) -> None:
        """Drop the connection now (SIGKILL: no clean end of stream)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None

    def __enter__(self) -> HttpVideoServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.kill()
