#!/usr/bin/env bash
# Runs every fuzz target of the repository (every `func FuzzXxx` in a
# *_test.go file), one at a time, for FUZZTIME each (default 10s), and fails
# if any of them finds a crash. A crashing input is written by `go test` to
# the package's testdata/fuzz/FuzzXxx/ directory: commit it as a regression
# seed once the bug is fixed.
#
#   FUZZTIME=1m scripts/fuzz.sh          # longer
#   scripts/fuzz.sh FuzzREST FuzzVerify  # only these targets
set -uo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-10s}

targets=$(grep -rn --include='*_test.go' -E '^func Fuzz[A-Za-z0-9_]*\(' . |
	grep -v '^\./\.git/' |
	sed -E 's|^\./(.*)/[^/]*_test\.go:[0-9]+:func (Fuzz[A-Za-z0-9_]*)\(.*|\1 \2|' | sort -u)
if [ -z "$targets" ]; then
	echo "fuzz: no fuzz targets found" >&2
	exit 1
fi

failed=()
ran=0
while read -r dir name; do
	if [ $# -gt 0 ] && [[ " $* " != *" $name "* ]]; then
		continue
	fi
	echo "=== fuzz ./$dir $name for $FUZZTIME"
	ran=$((ran + 1))
	# go test sometimes ends a fuzzing run that reached -fuzztime with
	# "context deadline exceeded" and no failing input (a toolchain flake):
	# that run is tried once more; a real crash writes a failing input.
	for try in 1 2; do
		out=$($GO test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" "./$dir" 2>&1)
		rc=$?
		echo "$out"
		if [ $rc -eq 0 ]; then
			break
		fi
		if [ $try -eq 1 ] && ! grep -q "Failing input written" <<<"$out" && grep -q "context deadline exceeded" <<<"$out"; then
			echo "fuzz: $name stopped with 'context deadline exceeded' and no failing input; running it again"
			continue
		fi
		failed+=("./$dir $name")
		break
	done
done <<<"$targets"

if [ "$ran" -eq 0 ]; then
	echo "fuzz: no target matches $*" >&2
	exit 1
fi
if [ ${#failed[@]} -gt 0 ]; then
	echo "fuzz: ${#failed[@]} of $ran targets failed:" >&2
	printf '  %s\n' "${failed[@]}" >&2
	exit 1
fi
echo "fuzz: $ran targets ran for $FUZZTIME each, no crash"
