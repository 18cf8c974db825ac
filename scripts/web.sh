#!/usr/bin/env bash
# Builds the web client (web/src -> web/dist) with the esbuild, MQTT.js and
# TypeScript versions pinned in web/package.json and its lockfile:
#   scripts/web.sh          type-check and build into web/dist (make web)
#   scripts/web.sh check    type-check, build into a temporary directory and
#                           fail when web/dist differs from it (make test)
# Without npm it fails, unless PARLEY_ALLOW_SKIPS=1 allows it to be skipped
# (it then says so); .ci/run installs Node.js and npm when they are missing.
set -euo pipefail
cd "$(dirname "$0")/../web"
mode=${1:-build}
if ! command -v npm >/dev/null 2>&1; then
	if [ "${PARLEY_ALLOW_SKIPS:-}" = 1 ]; then
		echo "web: SKIPPED, npm not found (allowed by PARLEY_ALLOW_SKIPS=1)"
		exit 0
	fi
	echo "web: FAIL, npm not found (apt-get install nodejs npm, or set PARLEY_ALLOW_SKIPS=1)"
	exit 1
fi
# Install the pinned versions once, and again when the lockfile changes.
if [ ! -f node_modules/.package-lock.json ] || ! cmp -s package-lock.json node_modules/.parley-lock; then
	npm ci --no-audit --no-fund --loglevel=error
	cp package-lock.json node_modules/.parley-lock
fi
./node_modules/.bin/tsc --noEmit -p tsconfig.json
out=dist
if [ "$mode" = check ]; then
	out=$(mktemp -d)
	trap 'rm -rf "$out"' EXIT
fi
mkdir -p "$out"
./node_modules/.bin/esbuild src/main.ts --bundle --minify --target=es2020 --platform=browser \
	--legal-comments=none --log-level=warning --outfile="$out/app.js"
./node_modules/.bin/esbuild src/app.css --minify --log-level=warning --outfile="$out/app.css"
cp src/index.html "$out/index.html"
if [ "$mode" = check ]; then
	if ! diff -r "$out" dist >/dev/null; then
		echo "web: FAIL, web/dist does not match web/src: run make web and commit web/dist"
		diff -r -q "$out" dist || true
		exit 1
	fi
	echo "web: web/dist matches web/src (esbuild $(./node_modules/.bin/esbuild --version), tsc $(./node_modules/.bin/tsc --version | cut -d' ' -f2))"
fi
