"""Request checks for the endpoints beside chat: embeddings (OpenAI) and token counting (Anthropic).

As for chat, only what the gateway itself reads is checked (the model, the input it estimates and prices);
the provider checks the rest, and every other field passes through unchanged.
"""

from __future__ import annotations

import orjson

from gateway.errors import GatewayError
from gateway.formats import anthropic as anthropic_format
from gateway.formats import check_int, check_nesting, check_one_of, check_request_object, check_str, field
from gateway.formats import openai as openai_format
from gateway.wire import Json


def validate_embeddings(body: object) -> Json:
    w = openai_format.W
    if type(body) is not dict:
        raise GatewayError(400, "request body must be a JSON object", type="invalid_request_error")
    check_nesting(body)
    check_str(w, field(body, "model"), "model", non_empty=True)
    data = field(body, "input")
    if type(data) is str:
        check_str(w, data, "input", non_empty=True)
    elif type(data) is list and data:
        if not (all(type(x) is str for x in data) or all(type(x) is int for x in data)
                or all(type(x) is list and x and all(type(t) is int for t in x) for x in data)):
            raise GatewayError(400, "Invalid 'input': expected a string, an array of strings, an array of tokens "
                               "or an array of token arrays.", type="invalid_request_error", param="input",
                               code="invalid_type")
    elif type(data) is list:
        raise w.empty("input", data)
    else:
        raise w.missing("input") if data is None or "input" not in body else GatewayError(
            400, "Invalid type for 'input': expected a string or an array.", type="invalid_request_error",
            param="input", code="invalid_type")
    if body.get("encoding_format") is not None:
        check_one_of(w, body["encoding_format"], "encoding_format", ("float", "base64"))
    if body.get("dimensions") is not None:
        check_int(w, body["dimensions"], "dimensions", minimum=1)
    return body


def validate_count_tokens(body: object) -> Json:
    return check_request_object(anthropic_format.W, body)


def estimate_input_tokens(body: Json) -> int:
    """Tokens of a Messages body counted locally, when no provider can count them: ~4 characters a token."""
    size = sum(len(orjson.dumps(body.get(k))) for k in ("system", "messages", "tools") if k in body)
    return max(1, size // 4)
