"""A request handler served on loopback, for the unit tests' stand-in HTTP servers."""

import http.server
import threading


class ServedOnLoopback(object):
    """Serves `handler` (a BaseHTTPRequestHandler class) on 127.0.0.1 at a free port, in a thread
    of its own, until close(); `url` is where."""

    def __init__(self, handler):
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
