#!/usr/bin/env bash
# systemd as pid 1: a detached Debian bookworm (debootstrap minbase +
# systemd, made once into target/bench-debian-systemd) from `run -d
# /sbin/init` until `systemctl is-system-running --wait` answers running or
# degraded, then `stop` (SIGRTMIN+3 halts it); cargohold and podman, 5 runs
# each, alternating, as root.
#   usage: benches/systemd-vs-podman.sh
set -euo pipefail
cd "$(dirname "$0")/.."
for t in podman debootstrap bc; do
  command -v "$t" >/dev/null || { echo "$t is needed (apt-get install -y podman debootstrap bc)" >&2; exit 1; }
done
cargo build --release --quiet -p cargohold
ch=$PWD/target/release/cargohold
cache=$PWD/target/bench-debian-systemd
if [ ! -f "$cache/root.tar" ]; then
  rm -rf "$cache"; mkdir -p "$cache"
  debootstrap --variant=minbase --include=systemd,systemd-sysv bookworm "$cache/root" >/dev/null
  : >"$cache/root/etc/machine-id"
  tar -C "$cache/root" -cf "$cache/root.tar" .
fi
w=$(mktemp -d /tmp/cargohold-bench-systemd.XXXXXX)
image=localhost/cargohold-bench-systemd:1
cleanup() {
  "$ch" --store "$w/store" ps -aq 2>/dev/null | xargs -r "$ch" --store "$w/store" rm -f >/dev/null 2>&1 || true
  podman rm -af >/dev/null 2>&1 || true
  podman rmi -f "$image" >/dev/null 2>&1 || true
  rm -rf "$w"
}
trap cleanup EXIT
c() { "$ch" --store "$w/store" "$@"; }
c import "$cache/root.tar" bench/systemd:1 >/dev/null
podman import -q "$cache/root.tar" "$image" >/dev/null
podman=(podman run --runtime runc --cgroup-manager cgroupfs --ulimit nofile=20000:20000 --ulimit nproc=4096:4096)
now() { date +%s.%N; }
for i in 1 2 3 4 5; do
  t0=$(now); c run -d --name "b$i" bench/systemd:1 /sbin/init >/dev/null
  until c exec "b$i" systemctl is-system-running --wait 2>/dev/null | grep -qE 'running|degraded'; do sleep 0.02; done
  t1=$(now); c stop "b$i" >/dev/null; t2=$(now); c rm "b$i" >/dev/null
  echo "cargohold: boot $(echo "$t1 - $t0" | bc) s, stop $(echo "$t2 - $t1" | bc) s"
  t0=$(now); "${podman[@]}" -d --name "p$i" "$image" /sbin/init >/dev/null
  until podman exec "p$i" systemctl is-system-running --wait 2>/dev/null | grep -qE 'running|degraded'; do sleep 0.02; done
  t1=$(now); podman stop "p$i" >/dev/null; t2=$(now); podman rm "p$i" >/dev/null
  echo "podman:    boot $(echo "$t1 - $t0" | bc) s, stop $(echo "$t2 - $t1" | bc) s"
done
