"""A real S3 server (moto_server) on localhost, and a fault-injecting proxy in front of it.

Used by test_hcp.py so that downloads go through real HTTP, real botocore
retries and real connection handling, not an in-process mock.
"""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_moto_server(log_path: Path, timeout_s: float = 30.0) -> tuple[subprocess.Popen, str]:
    """Start ``python -m moto.server`` on a free port; returns the process and its endpoint URL."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    log = open(log_path, "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log, stderr=subprocess.STDOUT, env=env,
    )
    log.close()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"moto server exited with {process.returncode}: {log_path.read_text()[-2000:]}")
        try:
            urllib.request.urlopen(f"{url}/moto-api/", timeout=1).close()
            return process, url
        except urllib.error.HTTPError:
            return process, url  # it answers
        except OSError:
            time.sleep(0.1)
    stop_process(process)
    raise RuntimeError(f"moto server did not answer on {url} within {timeout_s} s")


def stop_process(process: subprocess.Popen) -> None:
    """Stop the process we started, by its PID."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def set_moto_auth(endpoint: str, enforce_after: float) -> None:
    """Make moto check signatures against its IAM keys after ``enforce_after`` more requests (inf: never)."""
    # Not form-encoded, or Flask swallows the body into request.form.
    request = urllib.request.Request(f"{endpoint}/moto-api/reset-auth", data=str(enforce_after).encode(),
                                     headers={"Content-Type": "text/plain"}, method="POST")
    urllib.request.urlopen(request, timeout=5).close()


class FaultProxy:
    """HTTP reverse proxy to ``upstream`` that can fail, corrupt or cut off responses.

    ``fail_next``: answer this many requests with 503 SlowDown before forwarding.
    ``corrupt_next``: flip one byte in the body of this many GET responses.
    ``drop_next``: send only half the body of this many GET responses, then close.
    ``requests``: (method, path, status) of every request seen.
    """

    def __init__(self, upstream: str):
        self.upstream = upstream.removeprefix("http://")
        self.fail_next = self.corrupt_next = self.drop_next = 0
        self.requests: list[tuple[str, str, int]] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FaultProxy":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def gets(self) -> int:
        return sum(1 for method, _, _ in self.requests if method == "GET")

    def _take(self, name: str) -> bool:
        with self.lock:
            if getattr(self, name) > 0:
                setattr(self, name, getattr(self, name) - 1)
                return True
            return False

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # keep test output quiet
                pass

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if proxy._take("fail_next"):
                    payload = b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
                    self._reply(503, {"Content-Type": "application/xml"}, payload)
                    return
                upstream = http.client.HTTPConnection(proxy.upstream, timeout=30)
                upstream.request(self.command, self.path, body=body, headers=dict(self.headers.items()))
                response = upstream.getresponse()
                data = response.read()
                headers = {k: v for k, v in response.getheaders()
                           if k.lower() not in {"transfer-encoding", "connection", "content-length"}}
                upstream.close()
                if self.command == "GET" and response.status in (200, 206) and data:
                    if proxy._take("corrupt_next"):
                        middle = len(data) // 2
                        data = data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1:]
                    elif proxy._take("drop_next"):
                        self._reply(response.status, headers, data, cut=len(data) // 2)
                        return
                self._reply(response.status, headers, data,
                            length=int(response.getheader("Content-Length") or len(data)))

            def _reply(self, status: int, headers: dict[str, str], data: bytes, cut: int | None = None,
                       length: int | None = None) -> None:
                proxy.requests.append((self.command, self.path, status))
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(length if length is not None else len(data)))
                self.end_headers()
                if self.command == "HEAD":
                    return
                if cut is not None:
                    self.wfile.write(data[:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(data)

            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _forward

        return Handler
