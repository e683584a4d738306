#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine with the Rust toolchain:
# installs the peer tools the tests start (skopeo, umoci, docker-registry,
# debootstrap for the reference images, htpasswd for registry auth,
# openssl for the test token server's keys, crun, runc, podman and its
# seccomp profile, pasta, catatonit, gcc for the static hostile probe,
# libseccomp for the runtime, OpenStack Swift for the S3 storage, docker.io
# for docker against our registry, openssh-client's agent for RUN --mount=type=ssh,
# qemu-user-static for builds of other platforms, with Debian's arm64 busybox to run under it),
# then format, lint, docs, tests, packaging and a short fuzzing run.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "installing test dependencies"
missing=()
for pkg in skopeo umoci docker-registry debootstrap apache2-utils openssl busybox-static acl crun runc uidmap \
  podman passt catatonit golang-github-containers-common libseccomp-dev gcc libc6-dev iproute2 pkg-config xz-utils bzip2 curl \
  docker.io openssh-client qemu-user-static; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
# Packages' own daemons (docker, memcached, swift) are kept from starting system-wide: the tests
# start what they need on loopback.
pol=/usr/sbin/policy-rc.d made_pol=
if [ ! -e $pol ]; then printf '#!/bin/sh\nexit 101\n' >$pol; chmod 755 $pol; made_pol=1; trap 'rm -f $pol' EXIT; fi
if ((${#missing[@]})); then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
for tool in skopeo umoci docker-registry debootstrap htpasswd openssl busybox getfacl crun runc newuidmap \
  podman pasta catatonit gcc ip xz bzip2 curl dockerd ssh-agent ssh-add ssh-keygen qemu-aarch64-static script; do
  command -v "$tool" >/dev/null || { echo "error: $tool is not installed" >&2; exit 1; }
done

# OpenStack Swift for the S3 storage tests (../shared/services/swift-saio.sh starts one per
# test on loopback); Prometheus for its metrics checker (promtool), which reads serve's metrics.
swift_missing=()
for pkg in swift swift-proxy swift-account swift-container swift-object python3-swiftclient python3-lxml memcached \
  prometheus; do
  dpkg -s "$pkg" >/dev/null 2>&1 || swift_missing+=("$pkg")
done
if ((${#swift_missing[@]})); then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${swift_missing[@]}" >/dev/null
fi
if [ -n "$made_pol" ]; then rm -f $pol; trap - EXIT; fi
command -v swift >/dev/null || { echo "error: swift (python3-swiftclient) is not installed" >&2; exit 1; }
command -v promtool >/dev/null || { echo "error: promtool (prometheus) is not installed" >&2; exit 1; }

[ -f /usr/share/containers/seccomp.json ] || { echo "error: podman's seccomp profile is missing" >&2; exit 1; }

# The arm64 emulator, registered as Debian's package describes it (systemd-binfmt does this on a
# booted system; the F flag opens the interpreter now, so it runs inside containers' roots).
binfmt=/proc/sys/fs/binfmt_misc
[ -e $binfmt/register ] || mount -t binfmt_misc binfmt_misc $binfmt
[ -e $binfmt/qemu-aarch64 ] || cat /usr/lib/binfmt.d/qemu-aarch64.conf >$binfmt/register
# Rootless networks: pasta opens /dev/net/tun as the unprivileged user; Debian's udev rule makes
# it 0666 on a booted system, some VM images leave it root-only.
[ "$(stat -c %a /dev/net/tun)" = 666 ] || chmod 0666 /dev/net/tun
# Debian's arm64 busybox, for the multi-platform build tests (fetched once).
arm64_busybox=/usr/local/lib/cargohold-test/busybox.arm64
if [ ! -x $arm64_busybox ]; then
  dpkg --print-foreign-architectures | grep -qx arm64 || { dpkg --add-architecture arm64 && apt-get update -qq; }
  fetch=$(mktemp -d)
  (cd "$fetch" && apt-get download -qq busybox-static:arm64 2>/dev/null && dpkg-deb -x busybox-static_*_arm64.deb x)
  mkdir -p "$(dirname $arm64_busybox)"
  install -m 755 "$fetch/x/bin/busybox" $arm64_busybox
  rm -rf "$fetch"
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo doc"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet

step "cargo test"
cargo test --workspace

step "cargo package"
# cargo verifies each package against the others through a local registry and
# caches what it extracts by name and version; a stale copy of our own
# unpublished crates from an earlier run would be compiled instead of this tree.
cargo_home=${CARGO_HOME:-$HOME/.cargo}
rm -rf "$cargo_home"/registry/src/*/cargohold-* "$cargo_home"/registry/cache/*/cargohold-*
cargo package --workspace --allow-dirty --quiet

step "fuzz targets"
targets=(reference_parse digest_parse manifest_parse config_parse docker_archive_manifest layer_apply auth_headers wishlist_parse dockerfile_parse)
if command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --quiet; then
  for t in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$t"
    # cargo-fuzz needs nightly-only flags; RUSTC_BOOTSTRAP lets the stable
    # toolchain (the only one these machines have) accept them.
    # The whole log is shown when a target fails (the crash, its input and the
    # stack); a clean run prints only its closing line.
    log=$(mktemp)
    if RUSTC_BOOTSTRAP=1 cargo fuzz run "$t" "fuzz/corpus/$t" "fuzz/corpus_seed/$t" -- -max_total_time=10 >"$log" 2>&1; then
      echo "$t: $(tail -n 1 "$log")"
    else
      echo "fuzz target $t failed:"
      grep -v '^"' "$log" | tail -n 80
      exit 1
    fi
  done
else
  echo "cargo-fuzz could not be installed: building the fuzz targets only"
  (cd fuzz && cargo build --quiet)
fi
