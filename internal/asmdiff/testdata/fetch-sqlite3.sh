#!/bin/sh
# Fetches the amalgamated sqlite3.c from the Debian source package, for the
# Generate benchmark (BenchmarkGenerateSQLite). Prints the path to set as
# HOTPATCH_BENCH_C:
#
#   HOTPATCH_BENCH_C=$(internal/asmdiff/testdata/fetch-sqlite3.sh) \
#       go test -run XXX -bench Generate ./internal/asmdiff/
#
# Needs a deb-src entry in /etc/apt/sources.list.d (copy debian.sources and
# say "Types: deb-src"), then apt-get update.
set -eu
dir=${1:-/var/tmp/hotpatch-bench}
mkdir -p "$dir"
cd "$dir"
if ! ls sqlite3-*/sqlite3.c >/dev/null 2>&1; then
	apt-get source --download-only sqlite3 >&2
	dpkg-source --no-check -x sqlite3_*.dsc >&2
fi
f=$(ls "$dir"/sqlite3-*/sqlite3.c | head -n 1)
echo "$f"
