#!/bin/sh
# Adds the md5sums control file to a .deb built by cargo-deb, in place.
#
#   packaging/debian/add-md5sums.sh target/debian/flytube_0.1.0-1_amd64.deb
#
# cargo-deb (3.8) writes none, and without it `dpkg --verify flytube` and
# debsums cannot check the installed files (lintian: no-md5sums-control-file).
# The format is deb-md5sums(5), as dh_md5sums writes it: "<md5>  <path>" with
# the path relative to /, one line per regular file, conffiles left out (dpkg
# keeps their checksums itself).
set -eu
[ $# -eq 1 ] && [ -f "$1" ] || { echo "usage: $0 PACKAGE.deb" >&2; exit 2; }
deb=$(realpath "$1")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
dpkg-deb --raw-extract "$deb" "$work/pkg"
(
    cd "$work/pkg"
    : > "$work/conffiles"
    [ -f DEBIAN/conffiles ] && sed 's,^/,,' DEBIAN/conffiles > "$work/conffiles"
    find . -path ./DEBIAN -prune -o -type f -printf '%P\n' \
        | LC_ALL=C sort | grep -vxF -f "$work/conffiles" \
        | tr '\n' '\0' | xargs -0 -r md5sum > DEBIAN/md5sums
    chmod 0644 DEBIAN/md5sums
    # Extracting touched the directories: give them back cargo-deb's one
    # timestamp, so the package stays reproducible.
    stamp=$(find . -path ./DEBIAN -prune -o -type f -printf '%T@\n' | sort -n | head -n 1)
    find . -type d -exec touch -h -d "@${stamp%.*}" {} +
    echo "${stamp%.*}" > "$work/stamp"
)
# Keep cargo-deb's compression (xz) and root:root ownership.
SOURCE_DATE_EPOCH=$(cat "$work/stamp") \
    dpkg-deb --root-owner-group -Zxz --build "$work/pkg" "$work/out.deb" >/dev/null
mv "$work/out.deb" "$deb"
