"""The hedging engine: runs one request's attempts over an alias's targets and picks the winner."""

from gateway.engine.attempt import Attempt, Launch, Outcome
from gateway.engine.hooks import Hooks, RequestRecord
from gateway.engine.race import Committed, Completed, Engine
from gateway.engine.runtime import Runtime

__all__ = ["Attempt", "Committed", "Completed", "Engine", "Hooks", "Launch", "Outcome", "RequestRecord",
           "Runtime"]
