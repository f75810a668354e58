"""The operations endpoints every long-running component serves: /healthz, /readyz, /status and /metrics."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError

from ragsync.errors import Refused

log = logging.getLogger(__name__)

# A readiness check answers None when all is well, or what is wrong; one that hangs must not hang /status.
CHECK_TIMEOUT_S = 5.0
Check = Callable[[], Awaitable[str | None]]
# An admin action takes the request's body and answers JSON; it validates the body as a pydantic model, raising
# ValidationError for a bad one, and Refused for a well-formed request that cannot be done.
Action = Callable[[bytes], Awaitable[dict[str, Any]]]
# What each admin action answers when it went through: a sync is requested (it runs later), a prune is done.
ADMIN_STATUS = {"sync": 202, "prune": 200}
SHOWN_VALUE_CHARS = 200  # of a bad value echoed back in a 422: enough to recognise it
DEFAULT_PORTS = {"scheduler": 9100, "fetcher": 9101, "embedder": 9102}


Handler = Callable[[web.Request], Awaitable[web.Response]]


@dataclass(frozen=True, kw_only=True)
class OpsTokens:
    """Who may read /status and call /admin/*: OPS_TOKEN guards both, ADMIN_TOKEN (when set) guards /admin/* in
    its place. /healthz, /readyz and /metrics stay open for probes and Prometheus."""

    ops: str | None = None
    admin: str | None = None

    @property
    def status(self) -> tuple[str, ...]:
        """The bearer tokens /status accepts; none: it is open."""
        return tuple(t for t in (self.ops, self.admin) if t) if self.ops else ()

    @property
    def admin_routes(self) -> tuple[str, ...]:
        """The bearer tokens /admin/* accepts; none: the routes are off."""
        return (self.admin,) if self.admin else (self.ops,) if self.ops else ()


@dataclass(frozen=True, kw_only=True)
class OpsOptions:
    """Where a component serves its endpoints (port 0: any free one), and who may read and act on them."""

    host: str = "127.0.0.1"
    port: int = 0
    tokens: OpsTokens = field(default_factory=OpsTokens)


class OpsServer:
    """Serves one component's health, readiness, status and metrics over HTTP."""

    def __init__(
        self,
        component: str,
        options: OpsOptions,
        status: Callable[[], dict[str, Any]],
        checks: dict[str, Check],
        admin: Mapping[str, Action] | None = None,
    ) -> None:
        self.component = component
        self._host, self._port = options.host, options.port
        self._status = status
        self._checks = checks
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        tokens = options.tokens
        app.router.add_get("/status", _guarded(self._status_page, tokens.status))
        app.router.add_get("/metrics", self._metrics)
        for name, action in (admin or {}).items() if tokens.admin_routes else ():
            app.router.add_post(
                f"/admin/{name}", _guarded(self._admin(action, ADMIN_STATUS[name]), tokens.admin_routes)
            )
        self._runner = web.AppRunner(app, access_log=None)

    @property
    def port(self) -> int:
        """The port listened on (the real one when 0 was asked for)."""
        return self._port

    async def start(self) -> None:
        """Listen."""
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        addresses = self._runner.addresses
        if addresses:
            self._port = int(addresses[0][1])
        log.info("%s serves /healthz /readyz /status /metrics on http://%s:%d", self.component, self._host, self._port)

    async def stop(self) -> None:
        """Stop listening."""
        await self._runner.cleanup()

    async def readiness(self) -> dict[str, str | None]:
        """Each check's problem, or None where it passed."""
        results: dict[str, str | None] = {}
        for name, check in self._checks.items():
            try:
                results[name] = await asyncio.wait_for(check(), CHECK_TIMEOUT_S)
            except TimeoutError:
                results[name] = f"no answer within {CHECK_TIMEOUT_S:.0f} s"
            except Exception as error:  # noqa: BLE001 - a failing check is a finding, not a crash
                results[name] = f"{type(error).__name__}: {error}"
        return results

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"component": self.component, "status": "alive"})

    async def _readyz(self, request: web.Request) -> web.Response:
        checks = await self.readiness()
        ready = all(problem is None for problem in checks.values())
        return web.json_response(
            {"component": self.component, "ready": ready, "checks": checks}, status=200 if ready else 503
        )

    async def _status_page(self, request: web.Request) -> web.Response:
        checks = await self.readiness()
        body = {
            "component": self.component,
            "ready": all(p is None for p in checks.values()),
            "checks": checks,
            **self._status(),
        }
        return web.json_response(body, dumps=_dumps)

    def _admin(self, action: Action, done: int) -> Handler:
        """An admin route: 422 naming each bad field of the body and its value, 409 for a request refused, else
        `done` (behind its bearer token)."""

        async def handle(request: web.Request) -> web.Response:
            try:
                answer = await action(await request.read())
            except ValidationError as error:
                return web.json_response({"error": "invalid body", "fields": invalid_fields(error)}, status=422)
            except Refused as refused:
                return web.json_response({"error": str(refused)}, status=409)
            return web.json_response(answer, status=done)

        return handle

    async def _metrics(self, request: web.Request) -> web.Response:
        response = web.Response(body=generate_latest())
        response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
        return response


def _guarded(handler: Handler, accepted: tuple[str, ...]) -> Handler:
    """`handler` behind a bearer token, one of `accepted` (none: open): 401 without one, 403 with another."""
    if not accepted:
        return handler

    async def guarded(request: web.Request) -> web.Response:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            return web.json_response({"error": "send Authorization: Bearer <token>"}, status=401)
        given = header.removeprefix("Bearer ").encode()
        if not any(hmac.compare_digest(given, token.encode()) for token in accepted):
            return web.json_response({"error": "the bearer token is not the one this endpoint takes"}, status=403)
        return await handler(request)

    return guarded


def invalid_fields(error: ValidationError) -> list[dict[str, Any]]:
    """Each problem of a body: the field (`services.1`; `body` for the body itself), the value given (cut to
    SHOWN_VALUE_CHARS of its JSON when longer) and what is wrong with it."""
    return [
        {
            "field": ".".join(str(part) for part in problem["loc"]) or "body",
            "value": _shown_value(problem.get("input")),
            "problem": str(problem["msg"]).removeprefix("Value error, "),
        }
        for problem in error.errors(include_url=False)
    ]


def _shown_value(value: Any) -> Any:
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):  # not a JSON value: say what it was
        return repr(value)[:SHOWN_VALUE_CHARS]
    return value if len(text) <= SHOWN_VALUE_CHARS else text[:SHOWN_VALUE_CHARS] + "..."


def _dumps(value: Any) -> str:
    return json.dumps(value, default=str)
