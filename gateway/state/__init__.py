"""State shared by gateway replicas (Redis) or kept in this process (memory): rate limits, cache, breakers."""

from gateway.state.answers import SharedAnswers
from gateway.state.backend import StateBackend
from gateway.state.limiter import SharedLimiter

__all__ = ["SharedAnswers", "SharedLimiter", "StateBackend"]
