"""Request checks for the endpoints beside chat: embeddings (OpenAI) and token counting (Anthropic).

As for chat, only what the gateway itself reads is checked (the model, the input it estimates and prices);
the provider checks the rest, and every other field passes through unchanged.
"""

from __future__ import annotations

import orjson

from gateway.errors import GatewayError
from gateway.formats import check_nesting, check_non_empty_str, check_positive_int, check_request_object, invalid
from gateway.wire import Json


def validate_embeddings(body: object) -> Json:
    if type(body) is not dict:
        raise GatewayError(400, "request body must be a JSON object", type="invalid_request_error")
    check_nesting(body)
    if "model" not in body:
        raise invalid("model", "required")
    check_non_empty_str(body["model"], "model")
    if "input" not in body:
        raise invalid("input", "required")
    data = body["input"]
    if type(data) is str:
        if not data:
            raise invalid("input", "must be a non-empty string or array")
    elif type(data) is list:
        if not data:
            raise invalid("input", "must be a non-empty string or array")
        if not (all(type(x) is str for x in data) or all(type(x) is int for x in data)
                or all(type(x) is list and x and all(type(t) is int for t in x) for x in data)):
            raise invalid("input", "must be a string, an array of strings, an array of tokens or an array of "
                          "token arrays")
    else:
        raise invalid("input", "must be a string or an array")
    if body.get("encoding_format") not in (None, "float", "base64"):
        raise invalid("encoding_format", "must be one of float, base64")
    if body.get("dimensions") is not None:
        check_positive_int(body["dimensions"], "dimensions")
    return body


def validate_count_tokens(body: object) -> Json:
    return check_request_object(body)


def estimate_input_tokens(body: Json) -> int:
    """Tokens of a Messages body counted locally, when no provider can count them: ~4 characters a token."""
    size = sum(len(orjson.dumps(body.get(k))) for k in ("system", "messages", "tools") if k in body)
    return max(1, size // 4)
