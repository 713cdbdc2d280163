"""Load-test tool: hedging policies compared on simulated providers, tail latency against cost.

    python -m loadtest SCENARIO.yaml [--out DIR] [--duration S] [--rate R] [--no-plot]
    python -m loadtest overhead [--rate R] [--duration S]

See `loadtest.scenario` for the scenario file layout and `loadtest/scenarios/` for reference scenarios.
"""
