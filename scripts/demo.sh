#!/usr/bin/env bash
# The main job end to end, offline, on local defaults: a local busybox rootfs
# becomes an image (`import`), is unpacked, changed and committed as a new
# layer, saved as a `docker save` tar, loaded into a second store, and
# cross-checked by skopeo and umoci (peers reading what we wrote).
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

# A busybox root filesystem as a tarball, like a `docker export` or lxc rootfs.
mkdir -p "$work/rootfs/bin" "$work/rootfs/etc"
cp /bin/busybox "$work/rootfs/bin/busybox"
ln -sf busybox "$work/rootfs/bin/sh"
echo "demo image" >"$work/rootfs/etc/motd"
tar -C "$work/rootfs" -czf "$work/rootfs.tar.gz" .

set -x
"$ch" import "$work/rootfs.tar.gz" demo/busybox:1.0 -c 'CMD ["/bin/sh"]'
"$ch" unpack demo/busybox:1.0 "$work/root"
echo "changed by the demo" >"$work/root/etc/motd"
"$ch" commit "$work/root" --base demo/busybox:1.0 demo/busybox:1.1 -c 'ENV DEMO=1'
"$ch" images
"$ch" inspect demo/busybox:1.1
"$ch" save demo/busybox:1.1 -o "$work/busybox.tar"
CARGOHOLD_STORE=$work/store2 "$ch" load "$work/busybox.tar"
CARGOHOLD_STORE=$work/store2 "$ch" images
skopeo inspect "docker-archive:$work/busybox.tar" >/dev/null
"$ch" copy demo/busybox:1.1 "oci:$work/layout:1.1"
umoci unpack --image "$work/layout:1.1" "$work/bundle" >/dev/null
grep -q "changed by the demo" "$work/bundle/rootfs/etc/motd"
set +x
echo "demo ok: $work/busybox.tar is a docker-archive that cargohold and skopeo read; umoci unpacks the committed image"
