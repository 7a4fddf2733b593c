"""A small TCP proxy for fault tests and the failover benchmark: forward, cut or black-hole.

- ``forward()``: relay bytes both ways to the upstream server.
- ``cut()``: close every relayed connection (RST) and stop listening: new connections are refused.
- ``black_hole()``: keep accepting and reading, forward nothing: calls hang until they time out.

Kafka clients connect to the address the broker advertises, not the bootstrap address, so a
proxy in front of Kafka sets ``rewrite_frames = kafka_port_rewrite(...)``: the broker->client
direction is then read as Kafka's length-prefixed frames and the broker's advertised
``host:port`` is rewritten to the proxy's (same length, so only the port bytes change).

Example:
    proxy = TcpProxy("127.0.0.1", 9092).start()
    ...; proxy.cut(); ...; proxy.forward(); ...; proxy.stop()
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable

_CHUNK = 65536


def kafka_port_rewrite(host: str, broker_port: int, proxy_port: int) -> Callable[[bytes], bytes]:
    """Rewrite ``host`` + int32 ``broker_port`` (as in Metadata responses) to the proxy's port."""
    needle = host.encode() + struct.pack(">i", broker_port)
    replacement = host.encode() + struct.pack(">i", proxy_port)
    return lambda frame: frame.replace(needle, replacement)


class TcpProxy:
    def __init__(self, upstream_host: str, upstream_port: int, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.host = host
        self.port = port
        self.mode = "forward"
        self.rewrite_frames: Callable[[bytes], bytes] | None = None
        self._listener: socket.socket | None = None
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stopped = False
        self._bind()

    # -- control ---------------------------------------------------------------------------
    def start(self) -> TcpProxy:
        return self  # the listener runs from construction; kept for readability at call sites

    def forward(self) -> None:
        with self._lock:
            self.mode = "forward"
        if self._listener is None:
            self._bind()

    def cut(self) -> None:
        with self._lock:
            self.mode = "cut"
            listener, self._listener = self._listener, None
            sockets, self._sockets = self._sockets, set()
        if listener is not None:
            listener.close()
        for sock in sockets:
            _reset(sock)

    def black_hole(self) -> None:
        with self._lock:
            self.mode = "black_hole"
        if self._listener is None:
            self._bind()

    def stop(self) -> None:
        self._stopped = True
        self.cut()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    # -- relay -----------------------------------------------------------------------------
    def _bind(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        with self._lock:
            self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), name=f"proxy-accept-{self.port}",
                         daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while not self._stopped:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # listener closed by cut()/stop()
            with self._lock:
                mode = self.mode
                self._sockets.add(client)
            if mode == "black_hole":
                threading.Thread(target=self._pump, args=(client, None, False), daemon=True).start()
                continue
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
                upstream.settimeout(None)
            except OSError:
                _reset(client)
                continue
            with self._lock:
                self._sockets.add(upstream)
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket | None, from_upstream: bool) -> None:
        pending = b""
        try:
            while True:
                data = source.recv(_CHUNK)
                if not data:
                    break
                if self.mode != "forward" or target is None:
                    continue  # black hole: swallow
                rewrite = self.rewrite_frames if from_upstream else None
                if rewrite is None:
                    target.sendall(data)
                    continue
                pending += data
                while len(pending) >= 4:
                    size = struct.unpack(">i", pending[:4])[0]
                    if len(pending) < 4 + size:
                        break
                    frame = rewrite(pending[4:4 + size])
                    target.sendall(struct.pack(">i", len(frame)) + frame)
                    pending = pending[4 + size:]
        except OSError:
            pass
        finally:
            if self.mode == "forward":
                for sock in (source, target):
                    if sock is not None:
                        _close(sock)
                        with self._lock:
                            self._sockets.discard(sock)


def _reset(sock: socket.socket) -> None:
    """Close with RST (SO_LINGER 0), so the peer sees the connection die at once."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    _close(sock)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
