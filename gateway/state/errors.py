"""The one error of the shared state layer, in a module that does not import redis-py."""


class RedisUnavailable(Exception):
    """Redis cannot answer this call: use local state."""


class HubUnavailable(Exception):
    """The workers' hub cannot answer this call: use local state."""
