#!/usr/bin/env bash
# Generates TypeScript types from docs/openapi.yaml with openapi-typescript
# (pinned in tools/openapi-ts/package.json and its lockfile) and compiles
# tools/openapi-ts/check.ts against them with tsc --strict. Run by make test.
# Without npm it fails, unless PARLEY_ALLOW_SKIPS=1 allows it to be skipped
# (it then says so); .ci/run installs Node.js and npm when they are missing.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/../tools/openapi-ts"
npm_ci openapi-ts
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
./node_modules/.bin/openapi-typescript ../../docs/openapi.yaml --output "$tmp/parley.ts" >/dev/null
cp check.ts "$tmp/check.ts"
./node_modules/.bin/tsc --noEmit --strict --target es2022 --module nodenext --moduleResolution nodenext "$tmp/check.ts"
echo "openapi-ts: docs/openapi.yaml generates TypeScript types that compile (openapi-typescript $(node -p 'require("openapi-typescript/package.json").version'), tsc $(./node_modules/.bin/tsc --version | cut -d' ' -f2))"
