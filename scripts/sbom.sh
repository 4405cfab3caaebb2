#!/usr/bin/env bash
# Writes a CycloneDX SBOM (JSON) of the crates flytube is built from, plus the vendored
# libssh2 and its patches, to target/flytube.cdx.json. Uses cargo-cyclonedx when installed
# (cargo install --locked cargo-cyclonedx), else writes the same inventory from
# `cargo metadata` (crate, version, licence, source) so a release never lacks one.
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/flytube.cdx.json
mkdir -p target
if command -v cargo-cyclonedx >/dev/null; then
  cargo cyclonedx --format json --override-filename flytube.cdx
  mv flytube.cdx.json "$out"
else
  cargo metadata --format-version 1 --locked | python3 -c '
import json, sys
meta = json.load(sys.stdin)
packages = {p["id"]: p for p in meta["packages"]}
components = []
for node in meta["resolve"]["nodes"]:
    p = packages[node["id"]]
    if p["name"] == "flytube":
        continue
    c = {"type": "library", "name": p["name"], "version": p["version"],
         "purl": "pkg:cargo/%s@%s" % (p["name"], p["version"])}
    if p.get("license"):
        c["licenses"] = [{"expression": p["license"]}]
    if p["source"] is None:
        c["description"] = "vendored: " + p["manifest_path"]
    components.append(c)
patches = sorted(__import__("os").listdir("vendor/patches"))
components.append({"type": "library", "name": "libssh2", "version": "1.11.2_DEV",
                   "description": "bundled by libssh2-sys 0.3.4, patches: " + ", ".join(patches)})
json.dump({"bomFormat": "CycloneDX", "specVersion": "1.5", "version": 1,
           "metadata": {"component": {"type": "application", "name": "flytube"}},
           "components": components}, sys.stdout, indent=1)
' > "$out"
fi
echo "wrote $out"
