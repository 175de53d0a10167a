#!/bin/sh
# Builds the amalgamated sqlite3.c from the Debian source package, for the
# Generate benchmark (BenchmarkGenerateSQLite). Prints the path to set as
# HOTPATCH_BENCH_C:
#
#   HOTPATCH_BENCH_C=$(internal/asmdiff/testdata/fetch-sqlite3.sh) \
#       go test -run XXX -bench Generate ./internal/asmdiff/
#
# Needs a deb-src entry in /etc/apt/sources.list.d (copy debian.sources and
# say "Types: deb-src"), then apt-get update; and tclsh to build the
# amalgamation.
set -eu
dir=${1:-/var/tmp/hotpatch-bench}
mkdir -p "$dir"
cd "$dir"
if ! ls sqlite3-*/sqlite3.c >/dev/null 2>&1; then
	if ! ls -d sqlite3-*/ >/dev/null 2>&1; then
		apt-get source --download-only sqlite3 >&2
		dpkg-source --no-check -x sqlite3_*.dsc >&2
	fi
	src=$(ls -d "$dir"/sqlite3-*/ | head -n 1)
	(cd "$src" && ./configure >&2 && make sqlite3.c >&2)
fi
f=$(ls "$dir"/sqlite3-*/sqlite3.c | head -n 1)
echo "$f"
