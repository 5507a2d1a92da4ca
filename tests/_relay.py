"""A threaded TCP relay, to reach a server from another address than the one the kernel would choose.

On Linux, a connection to any 127/8 address leaves from 127.0.0.1; the relay listens on ``listen_host`` (a free
port) and opens its own connection to the target from ``source`` (e.g. 127.0.0.2), so the server sees that address.

Example::

    with Relay("127.0.0.1", ("127.0.0.1", 5432), source="127.0.0.2") as relay:
        psycopg.connect(host="127.0.0.1", port=relay.port, ...)   # the server sees 127.0.0.2
"""

from __future__ import annotations

import socket
import threading

__all__ = ["Relay"]


class Relay:
    """Listen on ``listen_host``:<free port>; forward each connection to ``target`` from address ``source``."""

    def __init__(self, listen_host: str, target: tuple[str, int], *, source: str | None = None) -> None:
        self.target, self.source = target, source
        self._listener = socket.create_server((listen_host, 0))
        self._listener.settimeout(0.1)  # so the accept loop sees close() promptly
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> Relay:
        self._spawn(self._accept)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._listener.close()
        for sock in list(self._sockets):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        for thread in list(self._threads):
            thread.join(timeout=10)

    def _spawn(self, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            upstream = socket.create_connection(self.target, timeout=10,
                                                source_address=(self.source, 0) if self.source else None)
            upstream.settimeout(None)
            self._sockets += [client, upstream]
            self._spawn(self._pipe, client, upstream)
            self._spawn(self._pipe, upstream, client)

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass
