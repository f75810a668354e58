"""The operations endpoints every long-running component serves: /healthz, /readyz, /status and /metrics."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
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


class OpsServer:
    """Serves one component's health, readiness, status and metrics over HTTP."""

    def __init__(
        self,
        component: str,
        host: str,
        port: int,
        status: Callable[[], dict[str, Any]],
        checks: dict[str, Check],
        admin: Mapping[str, Action] | None = None,
        admin_token: str | None = None,
    ) -> None:
        self.component = component
        self._host, self._port = host, port
        self._status = status
        self._checks = checks
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/status", self._status_page)
        app.router.add_get("/metrics", self._metrics)
        self._admin_token = admin_token or ""
        for name, action in (admin or {}).items() if admin_token else ():
            app.router.add_post(f"/admin/{name}", self._admin(action, ADMIN_STATUS[name]))
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

    def _admin(self, action: Action, done: int) -> Callable[[web.Request], Awaitable[web.Response]]:
        """An admin route: 401 without a bearer token, 403 with a wrong one, 422 naming each bad field of the body
        and its value, 409 for a request refused, else `done`."""

        async def handle(request: web.Request) -> web.Response:
            header = request.headers.get("Authorization", "")
            if not header.startswith("Bearer "):
                return web.json_response({"error": "send Authorization: Bearer <ADMIN_TOKEN>"}, status=401)
            if not hmac.compare_digest(header.removeprefix("Bearer ").encode(), self._admin_token.encode()):
                return web.json_response({"error": "the bearer token is not ADMIN_TOKEN"}, status=403)
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
