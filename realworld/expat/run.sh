#!/bin/sh
# The expat part of the realworld corpus: real upstream security fixes,
# built the package's way (debian/rules, dpkg-buildflags), applied to the
# libexpat.so.1 that Debian 12 ships and that a process under load has
# loaded, smoke-tested, and removed.
#
# The machine runs libexpat1 2.5.0-1+deb12u1. The archive's source is
# 2.5.0-1+deb12u2, which adds three upstream fixes as Debian patches:
# taking them off gives the source of the shipped binary, and each one is
# a fix the shipped binary lacks.
#
# Usage: realworld/expat/run.sh WORKDIR HOTPATCH   (as root; downloads)
# Writes WORKDIR/results.tsv: fix, status, functions, pause_us, reason.
set -eu
work=$(realpath "$1")
hp=$(realpath "$2")
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$work"
cd "$work"

shipped=$(dpkg-query -W -f '${Version}' libexpat1:amd64)
[ "$shipped" = "2.5.0-1+deb12u1" ] || { echo "expat: the shipped libexpat1 is $shipped, the corpus is for 2.5.0-1+deb12u1" >&2; exit 1; }
lib=/usr/lib/x86_64-linux-gnu/libexpat.so.1
libw=/usr/lib/x86_64-linux-gnu/libexpatw.so.1

if [ ! -d expat-2.5.0 ]; then
	"$here/../enable-sources.sh"
	apt-get source -qq expat=2.5.0-1+deb12u2
	DEBIAN_FRONTEND=noninteractive apt-get build-dep -y -qq expat >/dev/null
fi
fixes="expat-2.5.0-CVE-2024-50602 expat-2.5.0-CVE-2023-52425 expat-2.5.0-CVE-2024-8176"

# debian/rules copies expat/ into src/ and srcw/ (the UTF-16 variant) and
# builds there, once: a fix goes to both copies. Only the library's files
# matter to the running process; the test-suite hunks are left out.
mkdir -p fixes
for p in $fixes; do
	python3 - "expat-2.5.0/debian/patches/$p.patch" "fixes/$p.diff" <<'PY'
import re, sys
src = open(sys.argv[1]).read()
out = []
for part in re.split(r'(?m)^(?=diff --git )', src):
    m = re.match(r'diff --git a/(\S+) ', part)
    if m and m.group(1).startswith('expat/lib/'):
        for tree in ('src', 'srcw'):
            out.append(part.replace(' a/expat/lib/', ' a/%s/lib/' % tree).replace(' b/expat/lib/', ' b/%s/lib/' % tree))
open(sys.argv[2], 'w').write(''.join(out))
PY
done

gcc -O2 -pthread "$here/load.c" -o load -lexpat

# One tree for every fix: each build restores it, so the next one reuses
# its original stage.
tree=shipped
if [ ! -d "$tree" ]; then
	cp -a expat-2.5.0 "$tree"
	# The shipped source: deb12u2 without its three new patches.
	for r in expat-2.5.0-CVE-2024-8176 expat-2.5.0-CVE-2024-50602 expat-2.5.0-CVE-2023-52425; do
		patch -R -p1 -s -d "$tree" < "$tree/debian/patches/$r.patch"
	done
	rm -rf "$tree/.pc"
	(cd "$tree" && debian/rules clean >/dev/null 2>&1)
fi

echo "fix	status	functions	pause_us	reason" > results.tsv
for p in $fixes; do
	cve=$(echo "$p" | grep -o 'CVE-[0-9]*-[0-9]*')
	if ! (cd "$tree" && nice -n 15 "$hp" build --id "$cve" --target "$lib" --target "$libw" \
		"$work/fixes/$p.diff" -- debian/rules build) > "build-$cve.out" 2> "build-$cve.err"; then
		reason=$(grep '^hotpatch: build:' "build-$cve.err" | head -1 | sed 's/^hotpatch: build: //')
		printf '%s\trefused at build\t\t\t%s\n' "$cve" "$reason" >> results.tsv
		continue
	fi
	patchfile=$(awk -F'\t' '$2 ~ /libexpat\.so/ {print $1}' "build-$cve.out" | head -1)
	funcs=$(awk -F'\t' '$2 ~ /libexpat\.so/ {sub("functions: ", "", $4); print $4}' "build-$cve.out" | head -1)
	# A fix that adds members to the parser structure cannot go into a
	# running process: every live parser was allocated with the old
	# layout, and the new functions would read and write past its end.
	# The differ compares code and variables, not the layout of types on
	# the heap, so the corpus refuses these itself.
	decl='^+ *[A-Za-z_]*[ *]*m_[A-Za-z]*;'
	if grep -q "$decl" "fixes/$p.diff"; then
		members=$(grep -o "$decl" "fixes/$p.diff" | sed 's/.*\(m_[A-Za-z]*\);/\1/' | sort -u | tr '\n' ' ')
		printf '%s\trefused (not applied)\t%s\t\tthe fix adds members to struct XML_ParserStruct (%s): live parsers have the old layout\n' "$cve" "$funcs" "$members" >> results.tsv
		continue
	fi
	./load 2 > "load-$cve.log" &
	pid=$!
	sleep 1
	if ! "$hp" patch -p "$pid" --json "$patchfile" > "patch-$cve.json" 2> "patch-$cve.err"; then
		kill "$pid"
		printf '%s\trefused at patch\t%s\t\t%s\n' "$cve" "$funcs" "$(tail -1 "patch-$cve.err")" >> results.tsv
		continue
	fi
	pause=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["processes"][0]["pause_us"])' "patch-$cve.json")
	sleep 1
	status=ok
	reason=""
	after=$(tail -1 "load-$cve.log")
	case "$cve" in
	CVE-2024-50602) echo "$after" | grep -q 'stop-unstarted=0/44' || { status="smoke failed"; reason="after the patch: $after"; } ;;
	esac
	echo "$after" | grep -q 'failed=0$' || { status="smoke failed"; reason="parse failures under the patch: $after"; }
	if ! "$hp" unpatch -p "$pid" > "unpatch-$cve.out" 2>&1; then
		status="unpatch failed"
		reason=$(tail -1 "unpatch-$cve.out")
	fi
	sleep 0.5
	case "$cve" in
	CVE-2024-50602) tail -1 "load-$cve.log" | grep -q 'stop-unstarted=1/0' || { status="smoke failed"; reason="after unpatch: $(tail -1 "load-$cve.log")"; } ;;
	esac
	kill "$pid"
	printf '%s\t%s\t%s\t%s\t%s\n' "$cve" "$status" "$funcs" "$pause" "$reason" >> results.tsv
done
cat results.tsv
