"""A local HTTP endpoint that receives apprise ``json://`` notifications.

``ats demo`` shows the alerts it received; the tests assert on them.  Real apprise delivers to
it over real HTTP: nothing is patched.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class AlertEndpoint:
    """A real HTTP server on 127.0.0.1 that records the JSON apprise posts to it.

    ``status`` is the HTTP status it answers with (set 500 to make deliveries fail);
    ``url`` is the apprise URL (``json://127.0.0.1:PORT/alerts``).
    """

    def __init__(self, port: int = 0) -> None:
        self.posts: list[dict[str, Any]] = []
        self.rejected = 0
        self.status = 200
        self._lock = threading.Lock()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server API
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                with endpoint._lock:
                    status = endpoint.status
                    if status < 300:
                        endpoint.posts.append(json.loads(raw or b"{}"))
                    else:
                        endpoint.rejected += 1
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="alert-endpoint", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.port}/alerts"

    def titles(self) -> list[str]:
        with self._lock:
            return [p.get("title", "") for p in self.posts]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
