"""``lic serve``: run the HTTP service with uvicorn.

On SIGTERM the service reports not-ready at once, keeps serving for ``LIC_DRAIN_SECONDS`` (so a load
balancer stops sending traffic), then stops accepting connections, lets in-flight requests finish
(up to the request timeout) and shuts the workers down.
"""
from __future__ import annotations

import argparse
import logging
import sys
import threading

import uvicorn

from service.app import create_app
from service.core.config import Settings


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app, drain_seconds: float):
        super().__init__(config)
        self.lic_app, self.drain_seconds = app, drain_seconds

    def handle_exit(self, sig, frame) -> None:
        if self.lic_app.state.draining or not self.drain_seconds:
            self.lic_app.state.draining = True
            return super().handle_exit(sig, frame)
        self.lic_app.state.draining = True
        threading.Timer(self.drain_seconds, super().handle_exit, (sig, frame)).start()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="lic serve", description="Run the HTTP compression service (settings: LIC_* environment variables).")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--workers", type=int, help="inference worker processes")
    args = p.parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if v is not None}
    settings = Settings(**overrides)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    app = create_app(settings)
    config = uvicorn.Config(app, host=settings.host, port=settings.port, access_log=False, log_level="info",
                            timeout_graceful_shutdown=int(settings.request_timeout_s) + 5, lifespan="on")
    print(f"lic: serving on http://{settings.host}:{settings.port} (docs at /docs, metrics at /metrics)", flush=True)
    DrainingServer(config, app, settings.drain_seconds).run()


if __name__ == "__main__":
    main()
