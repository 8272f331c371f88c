"""``lic serve``: run the HTTP service with uvicorn.

Connections are bounded at the protocol: request line and headers must arrive within
``LIC_HEADER_TIMEOUT_S`` (uvicorn's h11 protocol has no such timer: a client trickling header bytes
kept its connection forever), idle keep-alive connections close after ``LIC_KEEP_ALIVE_S``, and
beyond ``LIC_MAX_CONNECTIONS`` requests get 503. Bodies are bounded in the app (``LIC_BODY_TIMEOUT_S``).

On SIGTERM the service reports not-ready at once, keeps serving for ``LIC_DRAIN_SECONDS`` (so a load
balancer stops sending traffic), then stops accepting connections, lets in-flight requests finish
(up to the request timeout) and shuts the workers down.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import threading

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from service.app import create_app
from service.core.config import Settings


class HeaderTimeoutProtocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request's head: armed when the connection opens
    and after every response, it closes the connection unless a new request's headers completed since."""

    header_timeout_s = 10.0  # set per server by ``header_timeout_protocol``

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def on_response_complete(self) -> None:
        self._arm_header_timer()  # first: a pipelined request that the call below starts is a new cycle
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._header_timer.cancel()
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        if getattr(self, "_header_timer", None) is not None:
            self._header_timer.cancel()
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._header_deadline, self.cycle)

    def _header_deadline(self, cycle_when_armed) -> None:
        if self.cycle is cycle_when_armed and not self.transport.is_closing():  # no request head since
            self.transport.close()


def header_timeout_protocol(seconds: float) -> type[HeaderTimeoutProtocol]:
    return type("HeaderTimeoutProtocol", (HeaderTimeoutProtocol,), {"header_timeout_s": seconds})


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
                            timeout_graceful_shutdown=int(settings.request_timeout_s) + 5, lifespan="on",
                            http=header_timeout_protocol(settings.header_timeout_s), timeout_keep_alive=settings.keep_alive_s,
                            limit_concurrency=settings.max_connections)
    print(f"lic: serving on http://{settings.host}:{settings.port} (docs at /docs, metrics at /metrics)", flush=True)
    DrainingServer(config, app, settings.drain_seconds).run()


if __name__ == "__main__":
    main()
