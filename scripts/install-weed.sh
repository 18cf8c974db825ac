#!/usr/bin/env bash
# Installs bin/weed, SeaweedFS's server, which the S3 tests of attachments
# run as a real S3-compatible server (internal/s3test). It is built from the
# Go module proxy: `go install pkg@version` refuses a module whose go.mod has
# replace directives, as SeaweedFS's has, so the module is downloaded and
# built in a copy of its directory, where its go.mod applies. About 5 min of
# CPU the first time; nothing when bin/weed is there.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=v0.0.0-20261109003541-7506e5f91cd6
out="$PWD/bin/weed"
stamp="$PWD/bin/weed.version"
if [ -x "$out" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$VERSION" ]; then
	exit 0
fi
mkdir -p bin
dir=$(go mod download -json "github.com/seaweedfs/seaweedfs@$VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
if [ -z "$dir" ]; then
	echo "install-weed: cannot download github.com/seaweedfs/seaweedfs@$VERSION" >&2
	exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "$dir/." "$work/"
chmod -R u+w "$work"
echo "install-weed: building SeaweedFS $VERSION into bin/weed (a few minutes)"
(cd "$work" && GOFLAGS=-mod=mod go build -o "$out" ./weed)
echo "$VERSION" > "$stamp"
