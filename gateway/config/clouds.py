"""Provider kinds, and the settings of the cloud kinds (Azure OpenAI, Amazon Bedrock, Google Vertex AI).

A provider kind is more than a wire format: `azure-openai` speaks OpenAI chat, `bedrock` and `vertex` speak
Anthropic messages, each with its own URLs, auth and (Bedrock) stream framing. `ProviderKind.wire` is the wire
format the engine translates to; everything else about a kind lives in its provider module.
Parsing and validation are in `gateway.config.load_clouds`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Literal

from gateway.wire import WireFormat


class ProviderKind(enum.StrEnum):
    OPENAI = "openai"
    ANTHROPIC = "anthropic"
    AZURE_OPENAI = "azure-openai"
    BEDROCK = "bedrock"
    VERTEX = "vertex"

    @property
    def wire(self) -> WireFormat:
        """The wire format a provider of this kind speaks (what the engine translates a door's request to)."""
        return _WIRE[self]


_WIRE = {ProviderKind.OPENAI: WireFormat.OPENAI, ProviderKind.ANTHROPIC: WireFormat.ANTHROPIC,
         ProviderKind.AZURE_OPENAI: WireFormat.OPENAI, ProviderKind.BEDROCK: WireFormat.ANTHROPIC,
         ProviderKind.VERTEX: WireFormat.ANTHROPIC}

AzureAuth = Literal["api-key", "entra"]
BedrockAuth = Literal["sigv4", "api-key"]
AZURE_V1 = "v1"  # api_version for the v1 URL style (`{endpoint}/openai/v1/...`), which takes no api-version
ENTRA_SCOPE = "https://cognitiveservices.azure.com/.default"


@dataclass(frozen=True, slots=True)
class AzureOptions:
    """`azure-openai`: the target's `model` names the deployment. `base_url` is the resource endpoint."""

    api_version: str = AZURE_V1  # "v1": `{endpoint}/openai/v1/chat/completions`; a date: the deployments style
    auth: AzureAuth = "api-key"  # api-key: the `api-key` header; entra: a bearer token from azure-identity
    entra_scope: str = ENTRA_SCOPE

    @property
    def v1(self) -> bool:
        return self.api_version == AZURE_V1


@dataclass(frozen=True, slots=True)
class BedrockOptions:
    """`bedrock`: InvokeModelWithResponseStream, SigV4-signed. The target's `model` is the model id (or an
    inference profile id / ARN). Credentials: these if given (from the config's ${ENV}), else `aws_profile`,
    else botocore's default chain (env, shared files, container and instance roles)."""

    region: str
    auth: BedrockAuth = "sigv4"  # api-key: a Bedrock API key as a bearer token (the provider's api_key)
    aws_profile: str = ""
    access_key_id: str = field(default="", repr=False)
    secret_access_key: str = field(default="", repr=False)
    session_token: str = field(default="", repr=False)


@dataclass(frozen=True, slots=True)
class VertexOptions:
    """`vertex`: Anthropic models through streamRawPredict. Credentials: the service-account (or other
    google-auth JSON) file if given, else application-default credentials."""

    project: str
    region: str  # e.g. us-east5, europe-west1, or "global"
    credentials_file: str = ""


CloudOptions = AzureOptions | BedrockOptions | VertexOptions
