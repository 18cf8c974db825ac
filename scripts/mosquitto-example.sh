#!/usr/bin/env bash
# Runs the worked mosquitto_pub/mosquitto_sub session of docs/protocol.md
# against a real parleyd on the embedded store, and checks what bob receives.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
# Without the Mosquitto clients the example fails, unless PARLEY_ALLOW_SKIPS=1
# allows it to be skipped (it then says so).
if ! command -v mosquitto_sub >/dev/null || ! command -v mosquitto_pub >/dev/null; then
	missing mosquitto-example mosquitto_sub/mosquitto_pub "apt-get install mosquitto-clients"
fi
go build -o bin/parleyd ./cmd/parleyd

work=$(mktemp -d)
export PARLEY_DATA_DIR=$work/data PARLEY_MQTT_ADDR=127.0.0.1:0 PARLEY_HTTP_ADDR=127.0.0.1:0 PARLEY_WS_ADDR=
start_parleyd mosquitto-example

# The session from docs/protocol.md.
ALICE=$(./bin/parleyd token alice)
BOB=$(./bin/parleyd token bob)
mosquitto_sub -h 127.0.0.1 -p "$port" -V mqttv311 -i bob/laptop -u bob -P "$BOB" -t im/inbox/bob -q 1 -v -C 1 -W 10 >"$work/bob.out" &
sub=$!
sleep 0.5
mosquitto_pub -h 127.0.0.1 -p "$port" -V mqttv311 -i alice/phone -u alice -P "$ALICE" -t im/send/u/bob -q 1 -m '{"cid":"c1","body":"hi bob"}'
wait $sub
cat "$work/bob.out"
grep -q '^im/inbox/bob {"kind":"message","conv":"dm:alice:bob","seq":1,"id":"[0-9a-v]*","cid":"c1","from":"alice","ts":"[0-9T:.Z-]*","type":"text","body":"hi bob"}$' "$work/bob.out" \
	|| { echo "mosquitto-example: FAILED, unexpected output"; exit 1; }

# A refused subscription: bob may not read alice's inbox (SUBACK failure).
mosquitto_sub -h 127.0.0.1 -p "$port" -V mqttv5 -i bob/spy -u bob -P "$BOB" -t im/inbox/alice -C 1 -W 2 2>"$work/spy.err" || true
grep -q "All subscription requests were denied" "$work/spy.err" \
	|| { cat "$work/spy.err"; echo "mosquitto-example: FAILED, bob's subscription to alice's inbox was not denied"; exit 1; }
echo "mosquitto-example: 2 passed, 0 failed"
