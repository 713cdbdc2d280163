"""What the cloud tests share: an environment in which no credential chain can reach a real cloud or a
metadata service, static test credentials, and a service-account file whose token endpoint is a simulator."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

AWS_KEY_ID = "AKIDSIMULATED0001"
AWS_SECRET = "simulated-secret-key/0001"
AWS_REQUIRED = f"{AWS_KEY_ID}:{AWS_SECRET}"  # the simulator's require_key for SigV4
AZURE_KEY = "azure-sim-key-0001"
ENTRA_TOKEN = "entra-sim-token-0001"
VERTEX_TOKEN = "ya29.vertex-sim-token-0001"
PROJECT = "sim-project-1"


def isolate(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No AWS, Google or Azure credential from this machine, and no metadata service (IMDS, GCE, IMDS Azure)."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                 "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN", "AWS_BEARER_TOKEN_BEDROCK",
                 "GOOGLE_APPLICATION_CREDENTIALS", "AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET",
                 "IDENTITY_ENDPOINT", "MSI_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("NO_GCE_CHECK", "True")  # google-auth: never probe the GCE metadata server
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "no-gcloud"))
    monkeypatch.setenv("ANTHROPIC_OPEN_TELEMETRY", "false")


def service_account_file(path: Path, token_uri: str) -> Path:
    """A service-account key file (a fresh RSA key) whose token endpoint is `token_uri` (a simulator's /token)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    path.write_text(json.dumps({
        "type": "service_account", "project_id": PROJECT, "private_key_id": "sim-key-1", "private_key": pem,
        "client_email": f"gateway@{PROJECT}.iam.gserviceaccount.com", "client_id": "1",
        "token_uri": token_uri, "universe_domain": "googleapis.com"}))
    return path
