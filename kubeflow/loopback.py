"""A loopback HTTP endpoint that records what a real API client sends and answers from a responder function.

`hubtfx schedule --dry-run` points the real Vertex AI / KFP client at it, so the printed request is exactly what
the client would send, and nothing leaves the machine. The server stops itself after `lifetime_s` even if the
caller never closes it.
"""
import dataclasses
import http.server
import json
import threading
from typing import Any, Callable, Dict, List, Tuple

# (method, path with query, parsed JSON body or None) -> (HTTP status, JSON payload)
Responder = Callable[[str, str, Any], Tuple[int, Dict]]


@dataclasses.dataclass
class RecordedRequest:
    method: str
    path: str
    body: Any
    headers: Dict[str, str] = dataclasses.field(default_factory=dict, repr=False)

    def as_dict(self) -> Dict:
        return {"method": self.method, "path": self.path, "body": self.body}


class RecordingEndpoint:
    """Use as a context manager; `url` is the base URL, `requests` what arrived, in order."""

    def __init__(self, responder: Responder, lifetime_s: float = 60.0):
        self.requests: List[RecordedRequest] = []
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class(responder))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._deadline = threading.Timer(lifetime_s, self._server.shutdown)
        self._deadline.daemon = True

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> "RecordingEndpoint":
        self._thread.start()
        self._deadline.start()
        return self

    def __exit__(self, *exc) -> None:
        self._deadline.cancel()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _handler_class(self, responder: Responder):
        recorded = self.requests

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                recorded.append(RecordedRequest(self.command, self.path, body, dict(self.headers)))
                status, payload = responder(self.command, self.path, body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

            def log_message(self, *args):  # the recorded requests are the log
                pass

        return Handler
