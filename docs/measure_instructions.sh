#!/usr/bin/env bash
# User-space instructions per request of the gateway (or the pass-through), counted by valgrind's callgrind:
# repeatable to about 0.1% whatever else the machine is doing, so two versions can be compared on a busy machine
# (system calls are not counted: a change that saves writes shows in `python -m loadtest perf`, not here).
#
#   docs/measure_instructions.sh gateway always_off json 300     # traces sampled out, non-streaming, 300 requests
#   docs/measure_instructions.sh gateway always_on stream 300    # every request traced, streaming
#   docs/measure_instructions.sh passthrough - json 300
#   docs/measure_instructions.sh floor - json 300                # loadtest.floor: the work before any feature
#
# Needs valgrind (Debian package). Run from the checkout to measure; ~20 s per arm. The simulator (zero latency,
# 16 tokens) runs on core 1 with the client, the process under test on core 0.
set -euo pipefail
WHAT=${1:-gateway}; SAMPLER=${2:-always_off}; MODE=${3:-json}; N=${4:-300}
PY=${PYTHON:-.venv/bin/python}
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
taskset -c 1 "$PY" -m loadtest.sim_host --spec-json '{"zero": {"profile": {"output_tokens": 16}, "seed": 1}}' \
  > "$WORK/sim.out" 2> "$WORK/sim.err" &
for _ in $(seq 1 100); do [ -s "$WORK/sim.out" ] && break; sleep 0.1; done
SIM=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["zero"])' "$WORK/sim.out")
PORT=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat > "$WORK/gw.yaml" <<YAML
models:
  chat: {hedge: {budget_percent: 10, delay_ms: 400}, targets: [{model: sim-model, provider: sim}]}
providers:
  sim: {api_key: loadtest, base_url: $SIM/v1, kind: openai}
server: {host: 127.0.0.1, port: $PORT}
telemetry: {traces_file: $WORK/traces.jsonl}
YAML
if [ "$WHAT" = passthrough ]; then
  command=("$PY" -m loadtest.passthrough --upstream "$SIM" --port "$PORT")
elif [ "$WHAT" = floor ]; then
  command=("$PY" -m loadtest.floor --upstream "$SIM" --port "$PORT")
else
  command=("$PY" -m gateway serve --config "$WORK/gw.yaml" --port "$PORT" --log-level WARNING --workers 1)
fi
OTEL_TRACES_SAMPLER=$SAMPLER taskset -c 0 valgrind --tool=callgrind --instr-atstart=no \
  --callgrind-out-file="$WORK/cg.out" "${command[@]}" > "$WORK/under-test.log" 2>&1 &
PID=$!
for _ in $(seq 1 600); do curl -sf "http://127.0.0.1:$PORT/healthz" > /dev/null && break; sleep 0.5; done
send() { taskset -c 1 "$PY" -c '
import asyncio, sys, aiohttp, orjson
url, n, stream = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "stream"
body = orjson.dumps({"model": "chat", "messages": [{"role": "user", "content": "Hello there, how are you today?"}],
                     "max_tokens": 16, "stream": stream})
async def main() -> None:
    left = [n]
    async with aiohttp.ClientSession() as http:
        async def worker() -> None:
            while left[0] > 0:
                left[0] -= 1
                async with http.post(url, data=body, headers={"content-type": "application/json"}) as resp:
                    await resp.read()
                    assert resp.status == 200, resp.status
        await asyncio.gather(*(worker() for _ in range(4)))
asyncio.run(main())' "http://127.0.0.1:$PORT/v1/chat/completions" "$1" "$MODE"; }
send 100  # warm-up, not counted
callgrind_control -i on "$PID" > /dev/null 2>&1
send "$N"
callgrind_control -i off "$PID" > /dev/null 2>&1
callgrind_control -d "$PID" > /dev/null 2>&1
sleep 1
TOTAL=$(cat "$WORK"/cg.out.* | awk '/^(summary|totals):/ {s += $2} END {print s}')
echo "$WHAT $SAMPLER $MODE: $((TOTAL / N)) instructions per request ($N requests)"
