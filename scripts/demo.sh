#!/usr/bin/env bash
# The main job end to end, offline, on local defaults: a local busybox rootfs
# becomes an image (`import`), is unpacked, changed and committed as a new
# layer, built on with a Dockerfile (RUN in cargohold's own container) and
# run, saved as a `docker save` tar, loaded into a second store,
# cross-checked by skopeo and umoci (peers reading what we wrote), pushed to a
# registry on loopback and published into a CernVM-FS-style tree.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for pkg in busybox-static umoci skopeo docker-registry curl passt libseccomp-dev golang-github-containers-common; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
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
for applet in sh cat echo ls id grep; do ln -sf busybox "$work/rootfs/bin/$applet"; done
echo "demo image" >"$work/rootfs/etc/motd"
tar -C "$work/rootfs" -czf "$work/rootfs.tar.gz" .

set -x
"$ch" import "$work/rootfs.tar.gz" demo/busybox:1.0 -c 'CMD ["/bin/sh"]'
"$ch" unpack demo/busybox:1.0 "$work/root"
echo "changed by the demo" >"$work/root/etc/motd"
"$ch" commit "$work/root" --base demo/busybox:1.0 demo/busybox:1.1 -c 'ENV DEMO=1'
mkdir -p "$work/ctx" && echo "built by the demo" >"$work/ctx/note"
printf 'FROM demo/busybox:1.1\nCOPY note /note\nRUN cat /note /etc/motd > /report\nCMD ["cat", "/report"]\n' >"$work/ctx/Dockerfile"
"$ch" build -t demo/app:1 "$work/ctx"
report=$("$ch" run --network none demo/app:1)
grep -q "built by the demo" <<<"$report"
# A staged OS image: the rootfs tarball, an injected file, a stage script and a selfcheck.
mkdir -p "$work/os/injected_volumes/etc" "$work/os/injected_volumes/bootstrap_scripts"
printf 'image = "demo/os"\nbase_tarball = "../rootfs.tar.gz"\ncommand = ["/bin/sh"]\n' >"$work/os/stage.toml"
echo "injected by the demo" >"$work/os/injected_volumes/etc/issue"
printf '#!/bin/sh\necho "staged" >> /etc/motd\n' >"$work/os/injected_volumes/bootstrap_scripts/stage2.sh"
printf '#!/bin/sh\ngrep -q staged /etc/motd && grep -q injected /etc/issue\n' >"$work/os/injected_volumes/bootstrap_scripts/selfcheck.sh"
"$ch" stage "$work/os"
"$ch" stage promote demo/os 1.0
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

# A registry on loopback, and the image published from it into a local tree.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
printf 'version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:%s\n' \
  "$work/registry" "$port" >"$work/registry.yml"
docker-registry serve "$work/registry.yml" >/dev/null 2>&1 &
registry_pid=$!
trap 'kill $registry_pid 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/v2/" >/dev/null && break; sleep 0.05; done
printf 'version: 1\nuser: demo\ncvmfs_repo: %s\noutput_format: "http://127.0.0.1:%s/thin/$(image)"\ninput:\n  - "http://127.0.0.1:%s/demo/busybox:*"\n' \
  "$work/unpacked" "$port" "$port" >"$work/wishlist.yaml"
set -x
"$ch" push demo/busybox:1.1 "127.0.0.1:$port/demo/busybox:1.1"
"$ch" publish convert "$work/wishlist.yaml" -n "$work/notifications.jsonl"
ls -l "$work/unpacked/127.0.0.1:$port/demo/"
grep -q "changed by the demo" "$work/unpacked/127.0.0.1:$port/demo/busybox:1.1/etc/motd"
"$ch" publish convert "$work/wishlist.yaml"
"$ch" inspect "docker://127.0.0.1:$port/thin/demo/busybox:1.1" --config
set +x
echo "demo ok: $work/busybox.tar is a docker-archive that cargohold and skopeo read; umoci unpacks the committed image;"
echo "         $work/unpacked holds the published tree (second run skipped everything); a thin image is in the registry"
