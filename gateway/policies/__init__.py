"""Resilience policies the hedging engine consults: per-provider circuit breakers, the global hedge
budget and the adaptive hedge delay.

Each policy is plain frozen options plus a small synchronous runtime that reads time from an injectable
`Clock`, so tests drive it exactly. Policies never block, never log and never trace: the event loop calls
them inline, and the few events worth reporting go out through optional callbacks.
"""
