"""The pilot's inference service: the tiny model behind HTTP on the loopback address only.

  GET  /health                                   -> {"ok": true, "backend": "cpu-numpy"}
  POST /generate {"context": [ids], "max_new_tokens": 16} -> {"tokens": [ids]}   (greedy decoding)

Binds 127.0.0.1 on the port given (0: one the kernel picks, certainly free) and prints one JSON line
{"event": "listening", "host": "127.0.0.1", "port": N, "pid": P} once it accepts connections. Loads the newest
checkpoint of the training job when ``--checkpoint-dir`` has one, else keeps the seeded random weights (the
result says which). SIGTERM stops it cleanly.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pilot_model as pm
from pilot_train import add_model_args, config_from_args

MAX_NEW_TOKENS = 256


class Server(ThreadingHTTPServer):
    # The default listen backlog (5) drops SYNs under concurrent clients; each drop costs a 1 s retransmit.
    request_queue_size = 128
    daemon_threads = True


def make_handler(model, info: dict):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # no access log on stderr
            pass

        def _reply(self, code: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/health":
                self._reply(200, {"ok": True, **info})
            else:
                self._reply(404, {"error": "not found"})

        def do_POST(self) -> None:
            if self.path != "/generate":
                self._reply(404, {"error": "not found"})
                return
            try:
                req = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                ctx = [int(t) % model.cfg.vocab for t in req["context"]]
                n = int(req.get("max_new_tokens", 16))
                if not ctx or not 0 < n <= MAX_NEW_TOKENS:
                    raise ValueError(f"need a non-empty context and 0 < max_new_tokens <= {MAX_NEW_TOKENS}")
            except (ValueError, KeyError, TypeError) as exc:
                self._reply(400, {"error": str(exc)})
                return
            ctx = [0] * max(0, model.cfg.context - len(ctx)) + ctx
            out = []
            for _ in range(n):
                tok = model.next_token(ctx)
                out.append(tok)
                ctx.append(tok)
            self._reply(200, {"tokens": out})

    return Handler


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_model_args(p)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--checkpoint-dir", default=None)
    p.add_argument("--marker", default="", help="a string that makes this process findable (ignored otherwise)")
    args = p.parse_args(argv)

    model = pm.select_backend(args.backend, config_from_args(args))
    loaded = pm.load_latest(model, args.checkpoint_dir) if args.checkpoint_dir else None
    info = {"backend": model.name, "weights": f"checkpoint step {loaded['step']}" if loaded else "random (seeded)"}
    server = Server(("127.0.0.1", args.port), make_handler(model, info))
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    sys.stdout.write(json.dumps({"event": "listening", "host": "127.0.0.1", "port": server.server_address[1],
                                 "pid": os.getpid(), **info}) + "\n")
    sys.stdout.flush()
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
