"""The clouds' routes on a simulated provider: Azure OpenAI, Amazon Bedrock, Google Vertex AI (and Google's
OAuth token endpoint). Each is a counted route with the cloud's own dialect, through the same door as
the first-party routes (profile, key check, random draws), so one simulator can stand for any of them.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

import orjson
from aiohttp import web

from gateway.simulator.azure_wire import AzureDialect, api_version_refusal
from gateway.simulator.bedrock_wire import BedrockDialect
from gateway.simulator.vertex_wire import VertexDialect, google_error, issue_token

if TYPE_CHECKING:
    from gateway.simulator.server import SimulatedProvider

VERTEX_MODELS = "/v1/projects/{project}/locations/{region}/publishers/anthropic/models/{model}"


class CloudRoutes:
    """Handlers for the clouds' routes of one simulator. `tokens_issued` counts `/token` grants."""

    def __init__(self, sim: SimulatedProvider) -> None:
        self._sim = sim
        self.tokens: set[str] = set()  # access tokens issued by /token, accepted by the Vertex routes
        self.tokens_issued = 0
        self._seq = itertools.count(1)

    def add_to(self, app: web.Application) -> None:
        post = app.router.add_post
        post("/openai/deployments/{deployment}/chat/completions", self.azure_deployment_chat)
        post("/openai/deployments/{deployment}/embeddings", self.azure_deployment_embeddings)
        post("/openai/v1/chat/completions", self.azure_v1_chat)
        post("/openai/v1/embeddings", self.azure_v1_embeddings)
        post("/model/{model_id}/invoke-with-response-stream", self.bedrock_stream)
        post("/model/{model_id}/invoke", self.bedrock_invoke)
        post(VERTEX_MODELS, self.vertex)
        post("/token", self.google_token)

    async def azure_deployment_chat(self, request: web.Request) -> web.StreamResponse:
        refusal = api_version_refusal(request)
        if refusal is not None:
            return web.Response(status=refusal[0], body=refusal[1], content_type="application/json")
        dialect = AzureDialect(request.match_info["deployment"])
        return await self._sim._counted(request, "azure.chat.completions", dialect, self._sim._serve_chat)

    async def azure_deployment_embeddings(self, request: web.Request) -> web.StreamResponse:
        refusal = api_version_refusal(request)
        if refusal is not None:
            return web.Response(status=refusal[0], body=refusal[1], content_type="application/json")
        dialect = AzureDialect(request.match_info["deployment"])
        return await self._sim._counted(request, "azure.embeddings", dialect, self._sim._serve_embeddings)

    async def azure_v1_chat(self, request: web.Request) -> web.StreamResponse:
        return await self._sim._counted(request, "azure.chat.completions", AzureDialect(None), self._sim._serve_chat)

    async def azure_v1_embeddings(self, request: web.Request) -> web.StreamResponse:
        return await self._sim._counted(request, "azure.embeddings", AzureDialect(None), self._sim._serve_embeddings)

    async def bedrock_stream(self, request: web.Request) -> web.StreamResponse:
        dialect = BedrockDialect(request.match_info["model_id"], stream=True)
        return await self._sim._counted(request, "bedrock.invoke-with-response-stream", dialect,
                                        self._sim._serve_chat)

    async def bedrock_invoke(self, request: web.Request) -> web.StreamResponse:
        dialect = BedrockDialect(request.match_info["model_id"], stream=False)
        return await self._sim._counted(request, "bedrock.invoke", dialect, self._sim._serve_chat)

    async def vertex(self, request: web.Request) -> web.StreamResponse:
        model, _, method = request.match_info["model"].rpartition(":")
        if model == "count-tokens" and method == "rawPredict":
            return await self._sim._counted(request, "vertex.count-tokens", VertexDialect(None, self.tokens),
                                            self._sim._serve_count_tokens)
        if not model or method not in ("streamRawPredict", "rawPredict"):
            return web.Response(status=404, body=google_error(404), content_type="application/json")
        # The stream flag is the body's, as on Vertex (the anthropic SDK pairs stream: true with streamRawPredict).
        return await self._sim._counted(request, f"vertex.{method}", VertexDialect(model, self.tokens),
                                        self._sim._serve_chat)

    async def google_token(self, request: web.Request) -> web.Response:
        form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        status, body = issue_token(form, self.tokens, next(self._seq))
        if status == 200:
            self.tokens_issued += 1
        return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")
