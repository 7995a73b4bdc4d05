"""Ports for tests: one that nothing listens on, for "the endpoint does not answer" cases."""

import socket


def free_port():
    """A TCP port nothing listens on right now (bound and released: closed until someone binds it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def closed_port():
    """A port to point a client at when the test wants a refused connection."""
    return free_port()
