"""``kmem serve [SCENARIO|TRACE]``: serve the replay page over HTTP on this machine."""

from __future__ import annotations

import argparse
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final

from kmem.cli.args import COMMANDS, int_argument
from kmem.cli.html import add_source_arguments, document_from_args, warn_if_no_events
from kmem.errors import KmemError


class ServeError(KmemError, OSError):
    """The page cannot be served: the address is in use, not ours, or not allowed."""


# An idle connection is closed after this many seconds, and at most this many are served at
# once (each holds a thread): 300 idle sockets no longer hold 300 threads forever, and the
# ones beyond the bound are closed at once instead of queueing behind them.
CONNECTION_TIMEOUT: Final = 10.0
MAX_CONNECTIONS: Final = 32


class BoundedThreadingHTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer with at most ``max_connections`` handler threads: a connection
    accepted while all are busy is closed unanswered (a browser retries)."""

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler],
                 max_connections: int) -> None:
        super().__init__(address, handler)
        self.slots = threading.BoundedSemaphore(max_connections)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


def make_server(page: str, host: str = "127.0.0.1", port: int = 8000, *,
                timeout: float = CONNECTION_TIMEOUT, max_connections: int = MAX_CONNECTIONS
                ) -> ThreadingHTTPServer:
    """An HTTP server answering GET / (and /index.html) with ``page``; 404 for anything else.
    A connection silent for ``timeout`` seconds is closed; at most ``max_connections`` are
    served at once."""
    if not 0 <= port <= 65535:
        raise ServeError(f"cannot listen on {host}:{port}: a port is 0 to 65535")
    if not timeout > 0 or max_connections < 1:
        raise ServeError("the connection timeout and the connection bound must be positive")
    body = page.encode("utf-8")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] not in ("/", "/index.html"):
                self.send_error(404, "only / is served")
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # quiet: the command prints the address once

    Handler.timeout = timeout  # (StreamRequestHandler: the socket's timeout, then closed)
    try:
        return BoundedThreadingHTTPServer((host, port), Handler, max_connections)
    except OSError as error:
        raise ServeError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "serve",
        help=COMMANDS["serve"],
        description="Build the replay page (as kmem html) and serve it until interrupted.",
    )
    add_source_arguments(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    parser.add_argument("--port", type=int_argument, default=8000,
                        help="port (8000; 0 picks a free one)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from kmem.show.html_page import build_page

    document = document_from_args(args)
    if (status := warn_if_no_events(args, document)) is not None:
        return status
    page = build_page(document)
    server = make_server(page, args.host, args.port)
    host, port = server.server_address[:2]
    print(f"serving the kmem page at http://{host!s}:{port}/ (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    finally:
        server.server_close()
    return 0
