"""A TCP proxy on 127.0.0.1 that loses answers: fault injection for "the server did it, the client never heard".

The first `drop` connections are forwarded to the server as usual, but whatever the server
answers on them is thrown away and the client's connection is closed. Later connections pass
both ways untouched. Every thread is a daemon and every socket times out, so nothing outlives a test.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType

_TIMEOUT_S = 60.0


class DroppingProxy:
    def __init__(self, target_port: int, drop: int = 1) -> None:
        self.target_port = target_port
        self.to_drop = drop
        self.dropped = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> DroppingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self._stop.set()
        self._thread.join(5)
        self._listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                drop = self.dropped < self.to_drop
                self.dropped += drop
            threading.Thread(target=self._serve, args=(client, drop), daemon=True).start()

    def _serve(self, client: socket.socket, drop: bool) -> None:
        client.settimeout(_TIMEOUT_S)
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=_TIMEOUT_S)
        except OSError:
            client.close()
            return
        threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()
        if drop:
            with contextlib.suppress(OSError):
                upstream.recv(65536)  # the server answered (it has done the work): the client never sees it
            for sock in (client, upstream):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            return
        self._pipe(upstream, client)

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
