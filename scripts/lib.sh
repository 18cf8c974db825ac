# Shell functions the scripts share: source it, then call them with the
# script's name first, which begins their messages.

# missing NAME WHAT HINT: WHAT a script needs was not found. With
# PARLEY_ALLOW_SKIPS=1 it says NAME is SKIPPED and exits 0; else it says
# NAME FAILs, with HINT on how to get WHAT, and exits 1.
missing() {
	if [ "${PARLEY_ALLOW_SKIPS:-}" = 1 ]; then
		echo "$1: SKIPPED, $2 not found (allowed by PARLEY_ALLOW_SKIPS=1)"
		exit 0
	fi
	echo "$1: FAIL, $2 not found ($3, or set PARLEY_ALLOW_SKIPS=1)"
	exit 1
}

# npm_ci NAME: installs the versions pinned in the package-lock.json of the
# current directory once, and again when the lockfile changes. Without npm:
# missing.
npm_ci() {
	command -v npm >/dev/null 2>&1 || missing "$1" npm "apt-get install nodejs npm"
	if [ ! -f node_modules/.package-lock.json ] || ! cmp -s package-lock.json node_modules/.parley-lock; then
		npm ci --no-audit --no-fund --loglevel=error
		cp package-lock.json node_modules/.parley-lock
	fi
}

# start_parleyd NAME: starts ./bin/parleyd with the PARLEY_* settings of the
# environment (PARLEY_MQTT_ADDR=127.0.0.1:0 for a free port), its log in
# $work/log, and waits until it listens. It sets pid and port (its MQTT
# port), and a trap that stops it and removes $work when the script exits.
start_parleyd() {
	./bin/parleyd 2>"$work/log" &
	pid=$!
	trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$work"' EXIT
	for _ in $(seq 100); do grep -q "mqtt://" "$work/log" && break; sleep 0.1; done
	port=$(sed -n 's|.*mqtt://127.0.0.1:\([0-9]*\).*|\1|p' "$work/log" | head -1)
	[ -n "$port" ] || { cat "$work/log"; echo "$1: parleyd did not start"; exit 1; }
}
