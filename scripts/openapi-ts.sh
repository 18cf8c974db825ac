#!/usr/bin/env bash
# Generates TypeScript types from docs/openapi.yaml with openapi-typescript
# (pinned in tools/openapi-ts/package.json and its lockfile) and compiles
# tools/openapi-ts/check.ts against them with tsc --strict. Run by make test;
# .ci/run installs Node.js and npm when they are missing. Elsewhere, without
# npm, it says so and skips.
set -euo pipefail
cd "$(dirname "$0")/../tools/openapi-ts"
if ! command -v npm >/dev/null 2>&1; then
	if [ -n "${CI:-}" ]; then
		echo "openapi-ts: npm not found (.ci/run installs it)" >&2
		exit 1
	fi
	echo "openapi-ts: skipped, npm not found (install Node.js and npm to check the TypeScript types)"
	exit 0
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
