#!/bin/sh
# Enables Debian source packages (deb-src) for apt-get source and
# apt-get build-dep, beside the binary sources the machine already has.
# Opt-in: the realworld corpus runs it; nothing else does.
set -eu
src=/etc/apt/sources.list.d/debian-src.sources
if [ ! -e "$src" ]; then
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -e "$f" ] || continue
		sed 's/^Types: deb$/Types: deb-src/' "$f"
		echo
	done > "$src.tmp"
	grep -q '^Types: deb-src' "$src.tmp" || { rm -f "$src.tmp"; echo "enable-sources: no deb822 sources in /etc/apt/sources.list.d to copy" >&2; exit 1; }
	mv "$src.tmp" "$src"
fi
apt-get update -qq
