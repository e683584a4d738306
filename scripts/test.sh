#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine with the Rust toolchain:
# installs the peer tools the tests start (skopeo, umoci, docker-registry,
# debootstrap for the reference images, htpasswd for registry auth,
# openssl for the test token server's keys, crun, runc, podman and its
# seccomp profile, pasta, catatonit, gcc for the static hostile probe,
# libseccomp for the runtime, OpenStack Swift for the S3 storage, docker.io
# for docker against our registry, openssh-client's agent for RUN --mount=type=ssh),
# then format, lint, docs, tests, packaging and a short fuzzing run.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "installing test dependencies"
missing=()
for pkg in skopeo umoci docker-registry debootstrap apache2-utils openssl busybox-static acl crun runc uidmap \
  podman passt catatonit golang-github-containers-common libseccomp-dev gcc libc6-dev iproute2 pkg-config xz-utils bzip2 curl \
  docker.io openssh-client; do
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
  podman pasta catatonit gcc ip xz bzip2 curl dockerd ssh-agent ssh-add ssh-keygen; do
  command -v "$tool" >/dev/null || { echo "error: $tool is not installed" >&2; exit 1; }
done

# OpenStack Swift for the S3 storage tests (../shared/services/swift-saio.sh starts one per
# test on loopback).
swift_missing=()
for pkg in swift swift-proxy swift-account swift-container swift-object python3-swiftclient python3-lxml memcached; do
  dpkg -s "$pkg" >/dev/null 2>&1 || swift_missing+=("$pkg")
done
if ((${#swift_missing[@]})); then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${swift_missing[@]}" >/dev/null
fi
if [ -n "$made_pol" ]; then rm -f $pol; trap - EXIT; fi
command -v swift >/dev/null || { echo "error: swift (python3-swiftclient) is not installed" >&2; exit 1; }

[ -f /usr/share/containers/seccomp.json ] || { echo "error: podman's seccomp profile is missing" >&2; exit 1; }

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
