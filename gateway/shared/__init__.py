"""State shared by gateway replicas (Redis) or kept in this process (memory): rate limits, cache, breakers."""

from gateway.shared.answers import SharedAnswers
from gateway.shared.limiter import SharedLimiter
from gateway.shared.state import SharedState

__all__ = ["SharedAnswers", "SharedLimiter", "SharedState"]
