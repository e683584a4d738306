#!/usr/bin/env bash
# The main job end to end, offline, on local defaults: an image is made from a
# local busybox rootfs, stored, inspected, saved as a `docker save` tar, loaded
# into a second store, and read back by skopeo as a cross-check.
# (Building the image uses umoci until `cargohold import` lands with layerfs.)
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for pkg in busybox-static umoci skopeo; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
if ((${#missing[@]})); then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
cargo build --release --quiet -p cargohold
ch=$PWD/target/release/cargohold
work=$(mktemp -d /tmp/cargohold-demo.XXXXXX)
export CARGOHOLD_STORE=$work/store
echo "working in $work"

# A busybox root filesystem, packed as a one-layer OCI image.
umoci init --layout "$work/layout"
umoci new --image "$work/layout:1.0"
umoci unpack --rootless --image "$work/layout:1.0" "$work/bundle" >/dev/null
mkdir -p "$work/bundle/rootfs/bin"
cp /bin/busybox "$work/bundle/rootfs/bin/busybox"
ln -sf busybox "$work/bundle/rootfs/bin/sh"
umoci repack --image "$work/layout:1.0" "$work/bundle"
umoci config --image "$work/layout:1.0" --config.cmd /bin/sh

set -x
"$ch" copy "oci:$work/layout:1.0" demo/busybox:1.0
"$ch" images
"$ch" inspect demo/busybox:1.0
"$ch" save demo/busybox:1.0 -o "$work/busybox.tar"
CARGOHOLD_STORE=$work/store2 "$ch" load "$work/busybox.tar"
CARGOHOLD_STORE=$work/store2 "$ch" images
skopeo inspect "docker-archive:$work/busybox.tar" >/dev/null
set +x
echo "demo ok: $work/busybox.tar is a docker-archive that cargohold and skopeo both read"
