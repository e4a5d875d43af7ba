"""A network between a client and a server that a test can cut (see ``Partition``)."""

from __future__ import annotations

import contextlib
import socket
import threading


class Partition:
    """A TCP proxy to the emulator that can drop every packet, as a network partition does.

    While cut, nothing passes either way on the open connections, and new connections are
    accepted but never answered. The connections that were open when it was cut stay dead
    after it heals (their state lost, as with a NAT or conntrack entry): a client must give
    them up by itself. New connections pass again.
    """

    def __init__(self, upstream: str) -> None:
        host, port = upstream.removeprefix("http://").rsplit(":", 1)
        self._upstream = (host, int(port))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._term = 0  # one more at every cut
        self._cut = False
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, name="partition", daemon=True).start()

    def cut(self) -> None:
        self._cut = True
        self._term += 1

    def heal(self) -> None:
        self._cut = False

    def close(self) -> None:
        """Close every connection, the dead ones too (their pumps and the server's handlers
        end)."""
        self._listener.close()
        for one in self._sockets:
            with contextlib.suppress(OSError):  # closed already
                one.shutdown(socket.SHUT_RDWR)
            one.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # closed
                return
            self._sockets.append(client)
            if self._cut:
                continue  # accepted, never answered
            server = socket.create_connection(self._upstream)
            self._sockets.append(server)
            for source, sink in ((client, server), (server, client)):
                threading.Thread(
                    target=self._pump, args=(source, sink, self._term), daemon=True
                ).start()

    def _pump(self, source: socket.socket, sink: socket.socket, term: int) -> None:
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                return
            if self._term != term:
                continue  # open when the network was cut: its bytes are lost from now on
            if not data:
                with contextlib.suppress(OSError):  # already closed on that side
                    sink.shutdown(socket.SHUT_WR)
                return
            try:
                sink.sendall(data)
            except OSError:
                return
