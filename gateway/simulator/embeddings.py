"""The OpenAI embeddings endpoint (`POST /v1/embeddings`): deterministic vectors from the input.

A vector is the SHAKE-256 stream of `model + NUL + input` read as uniform values in [-1, 1), normalised to unit
length and rounded to float32, the precision the real API returns. Because a longer SHAKE output starts with the
shorter one, the vector with `dimensions=d` is the full vector's first d values renormalised, which is what the
real API promises for shortened embeddings. `encoding_format: base64` (the openai SDK's default, decoded by it)
is the same float32 values, little-endian, so both formats give a client identical vectors.
"""

from __future__ import annotations

import array
import base64
import hashlib
import math
import struct
import sys
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.simulator.chat import BadRequest, optional_positive_int

DEFAULT_DIMENSIONS = 1536  # text-embedding-3-small's
MAX_DIMENSIONS = 3072  # text-embedding-3-large's: the most any OpenAI embedding model returns
MAX_INPUTS = 2048  # the real API's limit on inputs per request
_UNIT = 2.0 / 2**32


@dataclass(frozen=True, slots=True)
class EmbeddingsRequest:
    model: str
    inputs: tuple[str | tuple[int, ...], ...]  # strings, or token arrays
    dimensions: int
    base64: bool
    prompt_tokens: int


def parse_embeddings_request(body: object) -> EmbeddingsRequest:
    """The request, or BadRequest naming the field, as the real API checks it."""
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("model: Field required", param="model")
    inputs = _inputs(body.get("input"))
    dimensions = optional_positive_int(body, "dimensions") or DEFAULT_DIMENSIONS
    if dimensions > MAX_DIMENSIONS:
        raise BadRequest(f"dimensions: must be <= {MAX_DIMENSIONS}", param="dimensions")
    encoding = body.get("encoding_format", "float")
    if encoding not in (None, "float", "base64"):
        raise BadRequest("encoding_format: must be 'float' or 'base64'", param="encoding_format")
    # Strings are counted as chat prompts are (characters // 4, at least 1 each); token arrays by their length.
    tokens = sum(len(item) if isinstance(item, tuple) else max(1, len(item) // 4) for item in inputs)
    return EmbeddingsRequest(model, inputs, dimensions, encoding == "base64", tokens)


def _inputs(value: object) -> tuple[str | tuple[int, ...], ...]:
    """`input` as the API takes it: a string, a list of strings, a token array, or a list of token arrays."""
    one_token_array = isinstance(value, list) and bool(value) and all(_is_token(t) for t in value)
    if isinstance(value, str) or one_token_array:
        value = [value]
    if not isinstance(value, list) or not value:
        raise BadRequest("input: must be a non-empty string, list of strings, or token array(s)", param="input")
    if len(value) > MAX_INPUTS:
        raise BadRequest(f"input: at most {MAX_INPUTS} inputs per request", param="input")
    out: list[str | tuple[int, ...]] = []
    for item in value:
        if isinstance(item, str) and item:
            out.append(item)
        elif isinstance(item, list) and item and all(_is_token(t) for t in item):
            out.append(tuple(item))
        else:
            raise BadRequest("input: each input must be a non-empty string or token array", param="input")
    return tuple(out)


def _is_token(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def embedding(model: str, item: str | tuple[int, ...], dimensions: int) -> array.array[float]:
    """The unit vector for one input, as float32 values."""
    text = item if isinstance(item, str) else "tokens:" + ",".join(map(str, item))
    raw = hashlib.shake_256(f"{model}\0{text}".encode()).digest(4 * dimensions)
    values = [u * _UNIT - 1.0 for u in struct.unpack(f"<{dimensions}I", raw)]
    norm = math.sqrt(math.fsum(v * v for v in values)) or 1.0
    return array.array("f", [v / norm for v in values])


def embeddings_body(request: EmbeddingsRequest) -> bytes:
    data: list[dict[str, Any]] = []
    for index, item in enumerate(request.inputs):
        vector = embedding(request.model, item, request.dimensions)
        data.append({"object": "embedding", "index": index, "embedding": _encode(vector, request.base64)})
    usage = {"prompt_tokens": request.prompt_tokens, "total_tokens": request.prompt_tokens}
    return orjson.dumps({"object": "list", "data": data, "model": request.model, "usage": usage})


def _encode(vector: array.array[float], as_base64: bool) -> list[float] | str:
    if not as_base64:
        return vector.tolist()
    if sys.byteorder == "big":  # the wire format is little-endian float32
        vector = array.array("f", vector)
        vector.byteswap()
    return base64.b64encode(vector.tobytes()).decode("ascii")

