"""The hub's side of shared latency (`gateway.state.latency`): the merged buckets of every worker.

One `latency` request from a worker carries its new samples (bins per target and bucket) and the buckets it
wants; the hub adds the first (the sketches' merge: bin-wise addition) and answers the second from the
merge, in the same step. Bounded like the Redis keys: at most `MAX_TARGETS` targets, buckets dropped once
they are older than `MAX_WINDOW_S` (plus one), bins limited to the sketch's clamp range (`checked_bins`).
"""

from __future__ import annotations

import time

import orjson

from gateway.clock import Clock
from gateway.policies.sketch import BUCKET_S, MAX_COUNT, MAX_WINDOW_S, Bins, TargetKey, bucket_of, flat, unflat
from gateway.state.latency import MAX_TARGETS

_KEPT_BUCKETS = int(MAX_WINDOW_S / BUCKET_S) + 1


class HubLatency:
    def __init__(self, *, wall: Clock = time.time) -> None:
        self._wall = wall
        self.buckets: dict[TargetKey, dict[int, Bins]] = {}
        self._pruned_at: int | None = None

    def exchange(self, payload: bytes) -> bytes:
        """`[[publish...], [read...]]` -> `[bins of each read...]` (see `HubLatencyExchange`). ValueError or
        TypeError when malformed (the hub logs it; the worker, unanswered, serves on its local windows)."""
        publish, reads = orjson.loads(payload)
        now = bucket_of(self._wall())
        oldest = now - _KEPT_BUCKETS
        for provider, model, stream, bucket, values in publish:
            bucket = int(bucket)
            if not oldest <= bucket <= now + 1:  # +1: a worker's clock a moment ahead of the hub's
                continue
            target = self._target((str(provider), str(model), bool(stream)))
            if target is None:
                continue
            bins = target.setdefault(int(bucket), {})
            for key, count in unflat(values).items():
                bins[key] = min(bins.get(key, 0) + count, MAX_COUNT)
        self._prune(oldest)
        answers = []
        for provider, model, stream, bucket in reads:
            target = self.buckets.get((str(provider), str(model), bool(stream)))
            answers.append(flat(target.get(int(bucket), {})) if target is not None else [])
        return orjson.dumps(answers)

    def _target(self, key: TargetKey) -> dict[int, Bins] | None:
        target = self.buckets.get(key)
        if target is None and len(self.buckets) < MAX_TARGETS:
            target = self.buckets[key] = {}
        return target

    def _prune(self, oldest: int) -> None:
        if self._pruned_at == oldest:  # once per bucket is enough
            return
        self._pruned_at = oldest
        for key, target in list(self.buckets.items()):
            for bucket in [b for b in target if b < oldest]:
                del target[bucket]
            if not target:
                del self.buckets[key]
