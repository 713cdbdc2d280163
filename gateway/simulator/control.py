"""A simulated provider's routes that are not counted: `GET /v1/models[/{id}]` and the `/_sim/...` control plane.

Models calls have no latency and never fail at random: clients use them as cheap probes, and tests use the
control plane to set up and read a provider while traffic runs.
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from gateway.simulator.anthropic_wire import AnthropicDialect
from gateway.simulator.chat import Dialect
from gateway.simulator.openai_wire import OpenAIDialect
from gateway.simulator.profile import parse_profile

if TYPE_CHECKING:
    from gateway.simulator.server import SimulatedProvider

_OPENAI = OpenAIDialect()
_ANTHROPIC = AnthropicDialect()


def same_key(given: str | None, required: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), required.encode())


def add_uncounted_routes(app: web.Application, sim: SimulatedProvider) -> None:
    routes = _Routes(sim)
    app.router.add_get("/v1/models", routes.models)
    app.router.add_get("/v1/models/{model_id:.+}", routes.model)  # ids may hold a slash
    app.router.add_get("/_sim/stats", routes.stats)
    app.router.add_get("/_sim/requests", routes.requests)
    app.router.add_post("/_sim/reset", routes.reset)
    app.router.add_get("/_sim/profile", routes.get_profile)
    app.router.add_put("/_sim/profile", routes.put_profile)


class _Routes:
    def __init__(self, sim: SimulatedProvider) -> None:
        self._sim = sim

    async def models(self, request: web.Request) -> web.Response:
        dialect, refusal = self._models_door(request)
        if refusal is not None:
            return refusal
        return web.Response(body=dialect.models_body(self._sim.profile.models), content_type="application/json")

    async def model(self, request: web.Request) -> web.Response:
        """One model of the profile's list; any other id is a 404 in the API's own error shape."""
        dialect, refusal = self._models_door(request)
        if refusal is not None:
            return refusal
        model = request.match_info["model_id"]
        if model not in self._sim.profile.models:
            return web.Response(status=404, body=dialect.unknown_model_body(model), content_type="application/json")
        return web.Response(body=dialect.model_body(model), content_type="application/json")

    def _models_door(self, request: web.Request) -> tuple[Dialect, web.Response | None]:
        """The format a models call speaks (the Anthropic SDK always sends anthropic-version), and a 401 if the
        profile requires a key the call lacks."""
        dialect: Dialect = _ANTHROPIC if "anthropic-version" in request.headers else _OPENAI
        required = self._sim.profile.require_key
        if required is not None and not same_key(dialect.credential(request.headers), required):
            body = dialect.error_body(401, "Invalid API key (simulated).", code="invalid_api_key")
            return dialect, web.Response(status=401, body=body, content_type="application/json")
        return dialect, None

    async def stats(self, request: web.Request) -> web.Response:
        return _json({"name": self._sim.name, **self._sim.stats.as_dict()})

    async def requests(self, request: web.Request) -> web.Response:
        """The last few counted requests (path, redacted headers, body), oldest first."""
        return _json({"name": self._sim.name, "requests": list(self._sim.stats.recent)})

    async def reset(self, request: web.Request) -> web.Response:
        self._sim.reset()
        return _json({"name": self._sim.name, **self._sim.stats.as_dict()})

    async def get_profile(self, request: web.Request) -> web.Response:
        return _json({"name": self._sim.name, "profile": self._sim.profile.to_dict()})

    async def put_profile(self, request: web.Request) -> web.Response:
        try:
            data = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return _json({"error": "profile: body is not valid JSON"}, status=400)
        try:
            profile = parse_profile(data)
        except ValueError as exc:
            return _json({"error": str(exc)}, status=400)
        self._sim.profile = profile  # requests already running keep the profile they started with
        return _json({"name": self._sim.name, "profile": profile.to_dict()})


def _json(data: dict[str, Any], status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(data), content_type="application/json")
