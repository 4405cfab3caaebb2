#!/usr/bin/env bash
# Re-creates vendor/libssh2-sys from the pristine libssh2-sys crate plus vendor/patches/*.patch,
# so the committed tree can always be checked against its sources:
#   vendor/refresh-libssh2-sys.sh && git diff --exit-code vendor/libssh2-sys
# Kept from the crate: what its build.rs compiles (libssh2/src, libssh2/include), the
# licences and the release notes. Left out: libssh2's docs, tests, examples and ports
# (docs/ tests/ example/ os400/ vms/ cmake/ m4/ scripts/ and the autotools files), which
# nothing builds.
set -euo pipefail
cd "$(dirname "$0")"
version=0.3.4
crate="libssh2-sys-$version"
src=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"$crate" 2>/dev/null | head -1 || true)
if [ -z "$src" ]; then
  tmp=$(mktemp -d)
  curl -sSfL "https://static.crates.io/crates/libssh2-sys/$crate.crate" | tar -xz -C "$tmp"
  src="$tmp/$crate"
fi
rm -rf libssh2-sys.new
mkdir -p libssh2-sys.new/libssh2
cp "$src"/{Cargo.toml,build.rs,lib.rs,LICENSE-APACHE,LICENSE-MIT} libssh2-sys.new/
cp -r "$src"/libssh2/{src,include,COPYING,RELEASE-NOTES,libssh2.pc.in} libssh2-sys.new/libssh2/
for patch in patches/*.patch; do
  patch -s -p1 -d libssh2-sys.new < "$patch"
done
# Keep the files that are ours (notes on the patches) across a refresh.
[ -f libssh2-sys/PATCHES.md ] && cp libssh2-sys/PATCHES.md libssh2-sys.new/
rm -rf libssh2-sys
mv libssh2-sys.new libssh2-sys
echo "vendor/libssh2-sys: $crate + $(ls patches/*.patch | wc -l) patch(es)"
