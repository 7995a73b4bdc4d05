"""A small TCP proxy on 127.0.0.1 for fault tests: forwards to a real server and can drop
every connection, refuse new ones, or cut a transfer after N bytes.

It stands between a client and a real server (rclone, PostgreSQL); it never answers on its
own, so what the client sees is a real server behind a bad network. Subclasses change what
it does through two hooks: on_connection() sees every client that connects, admit() decides
what of each chunk goes on (tests/helpers/faults.py's FaultProxy counts, throttles and stops).
"""

import socket
import threading


class TcpProxy:
    def __init__(self, target_host, target_port, cut_after_bytes=None):
        self.target = (target_host, target_port)
        self.cut_after_bytes = cut_after_bytes  # server->client bytes before the first cut
        self.refuse = False
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.connections = []
        self.lock = threading.Lock()
        self.cuts = 0
        self.forwarded = 0
        self.running = True
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while self.running:
            try:
                client = self.listener.accept()[0]
            except OSError:
                return
            self.on_connection(refused=self.refuse)
            if self.refuse:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.connections.append((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def on_connection(self, refused):
        """Called for every client that connects (refused: turned away). Nothing here."""

    def admit(self, data, downstream):
        """What of `data` (server->client when `downstream`) goes on; None cuts the connection.
        Here: the first cut after cut_after_bytes server->client bytes."""
        if downstream and self.cut_after_bytes is not None:
            with self.lock:
                room = self.cut_after_bytes - self.forwarded
                if room <= 0:
                    self.cut_after_bytes = None
                    self.cuts += 1
                    return None
                data = data[:room] if len(data) > room else data
                self.forwarded += len(data)
        return data

    def _pump(self, source, sink, downstream):
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                data = self.admit(data, downstream)
                if data is None:
                    break
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()

    def drop_all(self):
        """Cut every open connection now (a network blip)."""
        self._drop()
        self.cuts += 1

    def _drop(self):
        with self.lock:
            pairs, self.connections = self.connections, []
        for pair in pairs:
            for sock in pair:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self.running = False
        self.listener.close()
        self._drop()
