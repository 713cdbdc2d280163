"""Offline tuning from recorded traffic: the gateway's traces read back (`spans`, `records`), each target's latency
and error distributions fitted with the cut losers as censored samples (`survival`, `model`), and candidate hedge
policies replayed through the engine's own policy objects in a discrete-event simulation (`simulate`) to print a
cost/tail-latency frontier (`tune`, the `gateway tune` command). `python -m loadtest fit` builds on the same models.
"""
