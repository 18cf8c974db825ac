#!/usr/bin/env bash
# Builds the web client (web/src -> web/dist/app.js and app.css) with the
# esbuild, MQTT.js and TypeScript versions pinned in web/package.json and its
# lockfile; web/dist/index.html is not built but written by hand:
#   scripts/web.sh          type-check and build into web/dist (make web)
#   scripts/web.sh check    type-check, build into a temporary directory and
#                           fail when web/dist differs from it (make test)
# Without npm it fails, unless PARLEY_ALLOW_SKIPS=1 allows it to be skipped
# (it then says so); .ci/run installs Node.js and npm when they are missing.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/../web"
mode=${1:-build}
npm_ci web
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
if [ "$mode" = check ]; then
	if ! diff -r -x index.html "$out" dist >/dev/null; then
		echo "web: FAIL, web/dist does not match web/src: run make web and commit web/dist"
		diff -r -q -x index.html "$out" dist || true
		exit 1
	fi
	echo "web: web/dist matches web/src (esbuild $(./node_modules/.bin/esbuild --version), tsc $(./node_modules/.bin/tsc --version | cut -d' ' -f2))"
fi
