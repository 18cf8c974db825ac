#!/usr/bin/env bash
# Generates TypeScript types from docs/openapi.yaml with openapi-typescript
# (pinned in tools/openapi-ts/package.json and its lockfile) and compiles
# tools/openapi-ts/check.ts against them with tsc --strict. Run by make test.
# Without npm it fails, unless PARLEY_ALLOW_SKIPS=1 allows it to be skipped
# (it then says so); .ci/run installs Node.js and npm when they are missing.
set -euo pipefail
cd "$(dirname "$0")/../tools/openapi-ts"
if ! command -v npm >/dev/null 2>&1; then
	if [ "${PARLEY_ALLOW_SKIPS:-}" = 1 ]; then
		echo "openapi-ts: SKIPPED, npm not found (allowed by PARLEY_ALLOW_SKIPS=1)"
		exit 0
	fi
	echo "openapi-ts: FAIL, npm not found (apt-get install nodejs npm, or set PARLEY_ALLOW_SKIPS=1)"
	exit 1
fi
# Install the pinned versions once, and again when the lockfile changes.
if [ ! -f node_modules/.package-lock.json ] || ! cmp -s package-lock.json node_modules/.parley-lock; then
	npm ci --no-audit --no-fund --loglevel=error
	cp package-lock.json node_modules/.parley-lock
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
./node_modules/.bin/openapi-typescript ../../docs/openapi.yaml --output "$tmp/parley.ts" >/dev/null
cp check.ts "$tmp/check.ts"
./node_modules/.bin/tsc --noEmit --strict --target es2022 --module nodenext --moduleResolution nodenext "$tmp/check.ts"
echo "openapi-ts: docs/openapi.yaml generates TypeScript types that compile (openapi-typescript $(node -p 'require("openapi-typescript/package.json").version'), tsc $(./node_modules/.bin/tsc --version | cut -d' ' -f2))"
