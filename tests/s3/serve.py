"""The S3 server the tests and the benchmark run against: moto's S3 (a real S3 HTTP API server, in
memory) on 127.0.0.1, on a free port it prints as `PORT <n>` once it listens.

Two things are added around moto, and nothing else:
- Requests that carry a precondition (`If-Match`, `If-None-Match`) run one at a time. moto checks a
  precondition and then writes, with other requests free to run in between on its threads; S3 itself
  decides them atomically. Serialising them makes moto as strict as S3 for the two-writers tests.
- The server exits when its standard input closes, so it never outlives the test process that
  started it, however that process ends.

Usage: python3 serve.py   (needs `pip install "moto[server]"`)
"""

import logging
import os
import sys
import threading

from moto.moto_server.werkzeug_app import create_backend_app
from werkzeug.serving import make_server

app = create_backend_app("s3")
preconditions = threading.Lock()


def serialised_preconditions(environ, start_response):
    if "HTTP_IF_MATCH" in environ or "HTTP_IF_NONE_MATCH" in environ:
        with preconditions:
            # Consume the whole response inside the lock: the write happens while it is produced.
            return list(app(environ, start_response))
    return app(environ, start_response)


def exit_when_stdin_closes():
    sys.stdin.read()
    os._exit(0)


def main():
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = make_server("127.0.0.1", int(os.environ.get("S3_TEST_PORT", "0")), serialised_preconditions, threaded=True)
    threading.Thread(target=exit_when_stdin_closes, daemon=True).start()
    print(f"PORT {server.server_port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
