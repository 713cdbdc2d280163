"""Resilience policies: per-provider circuit breakers and bulkheads, per-alias hedge budgets, adaptive hedge
delays (consulted by the engine), and the response cache, coalescing and rate limits (consulted by the server
at the door).

Each policy is plain frozen options plus a small synchronous runtime that reads time from an injectable
`Clock`, so tests drive it exactly. Policies never block and never trace: the event loop calls them inline,
and the few events worth reporting go out through optional callbacks (a callback that fails is logged).
"""
