"""The hedging engine: runs one request's attempts over an alias's targets and hands over the winner."""

from gateway.engine.hooks import AttemptStarted, BreakerChanged, CompositeHooks, HedgeSkipped, Hooks, RequestStarted
from gateway.engine.race import Engine
from gateway.engine.records import Attempt, Launch, Outcome, RequestRecord, RequestSummary
from gateway.engine.runtime import Runtime
from gateway.engine.winners import Completed, StreamBroken, StreamingWinner, Winner

__all__ = ["Attempt", "AttemptStarted", "BreakerChanged", "Completed", "CompositeHooks", "Engine", "HedgeSkipped",
           "Hooks", "Launch", "Outcome", "RequestRecord", "RequestStarted", "RequestSummary", "Runtime",
           "StreamBroken", "StreamingWinner", "Winner"]
