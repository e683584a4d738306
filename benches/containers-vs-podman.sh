#!/usr/bin/env bash
# Detached containers: `run -d` until running, `ps -a` with 100 containers,
# an idle monitor's memory, and `logs` throughput, against podman where it
# has the same operation. Medians of 5 (hyperfine for run -d and ps), as
# root, store on a tmpfs.
#   usage: benches/containers-vs-podman.sh
set -euo pipefail
cd "$(dirname "$0")/.."
for t in podman hyperfine pasta; do
  command -v "$t" >/dev/null || { echo "$t is needed (apt-get install -y podman hyperfine passt)" >&2; exit 1; }
done
cargo build --release --quiet -p cargohold
ch=$PWD/target/release/cargohold
w=$(mktemp -d /tmp/cargohold-bench-ctr.XXXXXX)
mount -t tmpfs -o size=4g tmpfs "$w"
image=localhost/cargohold-bench-ctr:1
cleanup() {
  "$ch" --store "$w/store" ps -aq 2>/dev/null | xargs -r "$ch" --store "$w/store" rm -f >/dev/null 2>&1 || true
  podman rm -af >/dev/null 2>&1 || true
  podman rmi -f "$image" >/dev/null 2>&1 || true
  umount "$w"; rm -rf "$w"
}
trap cleanup EXIT
mkdir -p "$w/rootfs/bin" "$w/rootfs/etc"
cp /bin/busybox "$w/rootfs/bin/"
for a in $(/bin/busybox --list | grep -vx busybox); do ln -s busybox "$w/rootfs/bin/$a"; done
echo 'root:x:0:0::/root:/bin/sh' >"$w/rootfs/etc/passwd"
tar -C "$w/rootfs" -cf "$w/rootfs.tar" .
c() { "$ch" --store "$w/store" "$@"; }
c import "$w/rootfs.tar" bench/bb:1 >/dev/null
podman import -q "$w/rootfs.tar" "$image" >/dev/null
podman=(podman run --runtime runc --cgroup-manager cgroupfs --ulimit nofile=20000:20000 --ulimit nproc=4096:4096)

echo "== run -d until running (network none), then rm -f"
hyperfine -N --warmup 2 --runs 10 \
  -n "cargohold run -d" --prepare "sh -c '$ch --store $w/store rm -f bench >/dev/null 2>&1 || true'" \
  "$ch --store $w/store run -d --name bench --network none bench/bb:1 sleep 60" \
  -n "podman run -d" --prepare "sh -c 'podman rm -f pbench >/dev/null 2>&1 || true'" \
  "${podman[*]} -d --name pbench --network none $image sleep 60" 2>/dev/null | grep -E "Time|±|^ *[a-z]" || true
c rm -f bench >/dev/null; podman rm -f pbench >/dev/null

echo "== idle monitor memory (after 2 s; the monitor, and the container's waiting parent it forks)"
c run -d --name idle --network none bench/bb:1 sleep 600 >/dev/null
"${podman[@]}" -d --name pidle --network none "$image" sleep 600 >/dev/null
sleep 2
for pid in $(pgrep -f "container-monitor $(c ps -q --filter name=idle)"); do
  echo "cargohold pid $pid: $(grep -E '^(Rss|Pss):' "/proc/$pid/smaps_rollup" | tr -s ' ' | tr '\n' ' ')"
done
conmon=$(pgrep -f "conmon.*pidle" | head -1 || true)
[ -n "$conmon" ] && echo "podman's conmon pid $conmon: $(grep -E '^(Rss|Pss):' "/proc/$conmon/smaps_rollup" | tr -s ' ' | tr '\n' ' ')"
c rm -f idle >/dev/null; podman rm -f pidle >/dev/null

echo "== ps -a with 100 containers"
for i in $(seq 1 100); do c run -d --network none bench/bb:1 true >/dev/null; done
for i in $(seq 1 100); do "${podman[@]}" -d --network none "$image" true >/dev/null; done
hyperfine -N --warmup 3 --runs 20 -n "cargohold ps -a" "$ch --store $w/store ps -a" \
  -n "podman ps -a" "podman ps -a" 2>/dev/null | grep -E "Time|±|^ *[a-z]" || true

echo "== logs throughput (about 200 MB of output)"
c run -d --name chatty --network none bench/bb:1 sh -c 'yes 0123456789012345678901234567890123456789012345678901234567890123456789 | head -c 200000000' >/dev/null
c wait chatty >/dev/null
bytes=$(c logs chatty | wc -c)
t0=$(date +%s.%N); c logs chatty >/dev/null; t1=$(date +%s.%N)
echo "cargohold logs: $bytes bytes in $(echo "$t1 - $t0" | bc) s = $(echo "$bytes / ($t1 - $t0) / 1000000" | bc) MB/s"
