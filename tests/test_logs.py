import logging

import orjson
import pytest

from gateway.config.model import ModelRoute, Price, Target
from gateway.engine import RequestRecord
from gateway.engine.attempt import Attempt, Launch, Outcome
from gateway.logs import JsonFormatter, RequestLog
from gateway.types import WireFormat


def test_request_log_is_one_json_line_without_secrets(caplog: pytest.LogCaptureFixture) -> None:
    route = ModelRoute(alias="chat", targets=(Target("p", "m", Price(1, 1)),))
    record = RequestRecord(route=route, door=WireFormat.OPENAI, stream=True, started=0.0, latency_s=0.25)
    attempt = Attempt(index=0, target=route.targets[0], launch=Launch.PRIMARY, started=0.0, input_estimate=10,
                      outcome=Outcome.WON, input_tokens=10, output_tokens=5)
    record.attempts.append(attempt)
    record.winner = attempt
    with caplog.at_level(logging.INFO, logger="gateway.request"):
        RequestLog().request_finished(record)
    line = JsonFormatter().format(caplog.records[0])
    data = orjson.loads(line)
    assert data["msg"] == "request" and data["alias"] == "chat" and data["winner"] == "p/m"
    assert data["attempts"] == ["p/m:won"] and data["latency_ms"] == 250.0
    assert data["cost_usd"] == pytest.approx(15 / 1_000_000)
    assert "\n" not in line
