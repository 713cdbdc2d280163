"""What keeps a provider's garbage from breaking the gateway's own output, shared by both formats.

Events are checked for the fields the gateway reads as it reads them; what it copies on to a client without
reading it (an id, a model name, logprobs, an unknown field of a block) is checked where it is written out:
`encode_json` for a stream event, `whole_answer` for an assembled answer. Both raise `ProviderError`, which
the engine and the handlers turn into an error for the client (in the door's shape, or as an error event),
where any other exception would escape the request and cut its connection.
"""

from __future__ import annotations

import orjson

from gateway.errors import FailureKind, ProviderError
from gateway.formats import nests_within
from gateway.wire import Json

__all__ = ["ANSWER_NESTING", "encode_json", "malformed_answer", "whole_answer"]

# Levels an answer (or event) may nest: orjson writes at most 254, and an answer is nested a few levels deeper
# than the provider's event that carried a value (an input inside a block inside the content list...).
ANSWER_NESTING = 200


def encode_json(data: Json) -> bytes:
    """`data` as JSON; a provider event the gateway cannot write again (nested past what orjson writes) is a
    provider fault, like an event it cannot read."""
    try:
        return orjson.dumps(data)
    except orjson.JSONEncodeError as exc:
        raise ProviderError(FailureKind.FAULT, f"event cannot be passed on ({exc})", error_type="bad_response") \
            from None


def malformed_answer(reason: str) -> ProviderError:
    return ProviderError(FailureKind.FAULT, f"malformed answer ({reason})", error_type="bad_stream")


def whole_answer(body: Json) -> Json:
    """`body`, checked to be writable as JSON by the handler (the nesting bound); else a provider fault."""
    if not nests_within(body, ANSWER_NESTING):
        raise malformed_answer(f"nested more than {ANSWER_NESTING} levels")
    return body
