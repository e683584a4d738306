#!/usr/bin/env bash
# Registry server benchmark: `cargohold serve` vs Debian's docker-registry
# (distribution), both on a tmpfs, the same clients against each:
#   - server CPU (exact, from a CPU-accounting cgroup per server) per push
#     of the image by skopeo, each push into a fresh repository;
#   - 16 concurrent pulls of the image (manifest + every blob over one
#     kept-alive connection each) by a load generator that discards what
#     it receives in the kernel (src/bin/pull-load.rs), wall time,
#     throughput and server CPU; and by 16 curl processes;
#   - the same pulls with each server held to half a core by a cpu cgroup
#     (server-bound: the clients do not share the server's CPU budget);
#   - the server's peak RSS (VmHWM) through all of it.
#   usage: benches/serve-vs-distribution.sh OCI_LAYOUT TAG [RUNS]
# OCI_LAYOUT/TAG: e.g. ../shared/images/make-images.sh's layout, tag multi.
set -euo pipefail
layout=${1:?usage: serve-vs-distribution.sh OCI_LAYOUT TAG [RUNS]}
tag=${2:?tag}
runs=${3:-5}
cd "$(dirname "$0")/.."
cargo build --release --quiet -p cargohold -p cargohold-benches --bin cargohold --bin pull-load
ch=$PWD/target/release/cargohold
load=$PWD/target/release/pull-load
work=$(mktemp -d /tmp/cargohold-servebench.XXXXXX)
mount -t tmpfs -o size=8g tmpfs "$work"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "${cg:-}" ]; then rmdir "$cg" 2>/dev/null || true; fi
  for g in "${groups[@]}"; do rmdir "$g" 2>/dev/null || true; done
  umount "$work"
  rmdir "$work"
}
trap cleanup EXIT
echo '{"default":[{"type":"insecureAcceptAnything"}]}' >"$work/policy.json"
sk() { skopeo --policy "$work/policy.json" "$@"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 200); do curl -s "http://$1/v2/" >/dev/null && return; sleep 0.05; done; }
# A server's CPU time, exactly: each server runs in a CPU-accounting
# cgroup of its own (v1 cpuacct.usage, or v2 cpu.stat), read before and
# after. The tick-sampled utime+stime of /proc/PID/stat (10 ms ticks) can
# miss, or over-charge, a server that wakes for short bursts by a fifth of
# a push; it is used only where no cgroup can be made (said on stderr).
acct_root=""
if [ -w /sys/fs/cgroup/cpuacct ] && [ -f /sys/fs/cgroup/cpuacct/cpuacct.usage ]; then
  acct_root=/sys/fs/cgroup/cpuacct
elif [ -f /sys/fs/cgroup/cgroup.controllers ] && [ -w /sys/fs/cgroup ]; then
  acct_root=/sys/fs/cgroup
else
  echo "no writable CPU-accounting cgroup: server CPU is sampled from /proc/PID/stat (10 ms ticks)" >&2
fi
groups=()
# Puts process $1 in accounting group $2.
account() {
  [ -n "$acct_root" ] || return 0
  mkdir -p "$acct_root/cargohold-servebench.$$.$2"
  groups+=("$acct_root/cargohold-servebench.$$.$2")
  echo "$1" >"$acct_root/cargohold-servebench.$$.$2/cgroup.procs"
}
# CPU time (ns) of group $2, whose process is $1.
cpu_ns() {
  local g=$acct_root/cargohold-servebench.$$.$2
  if [ -z "$acct_root" ]; then
    awk -v hz="$(getconf CLK_TCK)" '{printf "%d\n", ($14 + $15) * 1e9 / hz}' "/proc/$1/stat"
  elif [ -f "$g/cpuacct.usage" ]; then
    cat "$g/cpuacct.usage"
  else
    awk '/^usage_usec/ {printf "%d\n", $2 * 1000}' "$g/cpu.stat"
  fi
}
# Runs a server as a daemon runs: in a session of its own. With the
# kernel's autogroup scheduling (on here), CPU is then shared between the
# server and the clients' session as between two programs, not thread by
# thread: in one session with the 16 pulling threads, a server's share of
# the CPU grows with how many threads it has (distribution runs a dozen,
# ours one per CPU), which is no measure of what it does with it. The
# background job execs setsid, which execs the server in place (the job
# leads no process group), so $! is the server's pid.
daemon() { exec setsid "$@"; }
hwm_kib() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }

port=$(free_port)
printf 'version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:%s\n' \
  "$work/dist" "$port" >"$work/dist.yml"
daemon docker-registry serve "$work/dist.yml" >/dev/null 2>&1 &
dist_pid=$!
pids+=("$dist_pid")
dist=127.0.0.1:$port
port=$(free_port)
daemon "$ch" -q serve --addr "127.0.0.1:$port" --root "$work/ours" &
ours_pid=$!
pids+=("$ours_pid")
ours=127.0.0.1:$port
wait_port "$dist"
wait_port "$ours"
account "$dist_pid" dist
account "$ours_pid" ours

: >"$work/results"
# Server CPU per push: a fresh, empty server of each kind for every run
# (skopeo would mount blobs it knows are already there).
for r in $(seq 1 "$runs"); do
  port=$(free_port)
  printf 'version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:%s\n' \
    "$work/dist-push$r" "$port" >"$work/dist-push$r.yml"
  daemon docker-registry serve "$work/dist-push$r.yml" >/dev/null 2>&1 &
  dpid=$!
  daddr=127.0.0.1:$port
  port=$(free_port)
  daemon "$ch" -q serve --addr "127.0.0.1:$port" --root "$work/ours-push$r" &
  opid=$!
  oaddr=127.0.0.1:$port
  wait_port "$daddr"
  wait_port "$oaddr"
  account "$dpid" "push-d$r"
  account "$opid" "push-o$r"
  for who in d o; do
    addr_var=${who}addr
    pid_var=${who}pid
    before=$(cpu_ns "${!pid_var}" "push-$who$r")
    sk copy -q --dest-tls-verify=false "oci:$layout:$tag" "docker://${!addr_var}/bench/push:$tag"
    after=$(cpu_ns "${!pid_var}" "push-$who$r")
    name=$([ "$who" = d ] && echo dist || echo ours)
    echo "push-cpu-$name $(python3 -c "print(($after - $before) / 1e9)")" >>"$work/results"
  done
  kill "$dpid" "$opid"
  wait "$dpid" "$opid" 2>/dev/null || true
  rm -rf "$work/dist-push$r" "$work/ours-push$r"
done
# The image the pulls fetch.
sk copy -q --dest-tls-verify=false "oci:$layout:$tag" "docker://$dist/bench/push1:$tag"
sk copy -q --dest-tls-verify=false "oci:$layout:$tag" "docker://$ours/bench/push1:$tag"

blobs=$(python3 - "$layout" "$tag" <<'PY'
import json, sys
root, tag = sys.argv[1], sys.argv[2]
idx = json.load(open(f"{root}/index.json"))
d = next(m for m in idx["manifests"] if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag)
m = json.load(open(f"{root}/blobs/sha256/{d['digest'].split(':')[1]}"))
print(" ".join(b["digest"] for b in [m["config"]] + m["layers"]))
PY
)
bytes=$(python3 - "$layout" $blobs <<'PY'
import os, sys
root = sys.argv[1]
print(sum(os.path.getsize(f"{root}/blobs/sha256/{d.split(':')[1]}") for d in sys.argv[2:]))
PY
)
paths="/v2/bench/push1/manifests/$tag"
for b in $blobs; do paths+=" /v2/bench/push1/blobs/$b"; done
# 16 pulls by the load generator: each a thread with one kept-alive
# connection, manifest then every blob, each body discarded in the kernel
# (`recv(MSG_TRUNC)`), so the clients take little of the 2 cores and the
# servers' own cost sets the pace. Prints the seconds it took; fails (and
# so ends the bench) when a response was wrong.
pull16() {
  local out
  # shellcheck disable=SC2086 # one argument per path
  out=$("$load" "$1" 16 application/vnd.oci.image.manifest.v1+json $paths) || return 1
  echo "${out#* }"
}
# The same 16 pulls by curl, one process per puller, its connection kept
# alive from the manifest through every blob, as registry clients do (a
# curl process per blob would measure curl's start-up: 80 of them take a
# third of 2 cores). curl copies every byte out through 16 KiB reads: on
# this 2-core machine it takes most of the CPU, so this figure is mostly
# the clients'.
pull16_curl() {
  local addr=$1 workers=()
  for _ in $(seq 1 16); do
    urls=("http://$addr/v2/bench/push1/manifests/$tag")
    for b in $blobs; do urls+=("http://$addr/v2/bench/push1/blobs/$b"); done
    outs=()
    for _ in "${urls[@]}"; do outs+=(-o /dev/null); done
    curl -sf -H 'Accept: application/vnd.oci.image.manifest.v1+json' "${outs[@]}" "${urls[@]}" &
    workers+=($!)
  done
  wait "${workers[@]}"
}
for r in $(seq 1 "$runs"); do
  for who in dist ours; do
    addr=${!who}
    pid_var=${who}_pid
    before=$(cpu_ns "${!pid_var}" "$who")
    t=$(pull16 "$addr")
    echo "pull16-$who $t" >>"$work/results"
    after=$(cpu_ns "${!pid_var}" "$who")
    echo "pull16-cpu-$who $(python3 -c "print(($after - $before) / 1e9)")" >>"$work/results"
    s=$(date +%s.%N); pull16_curl "$addr"; e=$(date +%s.%N)
    echo "pull16-curl-$who $(python3 -c "print($e - $s)")" >>"$work/results"
  done
done
# The same pulls with each server held to half a core (a cpu cgroup,
# v2 or v1), as on a mirror whose clients are elsewhere: the server's
# own throughput sets the pace whatever the clients cost.
cg=""
if [ -w /sys/fs/cgroup/cgroup.subtree_control ] && grep -qw cpu /sys/fs/cgroup/cgroup.controllers 2>/dev/null; then
  cg=/sys/fs/cgroup/cargohold-servebench.$$
  mkdir "$cg"
  echo "50000 100000" >"$cg/cpu.max"
elif [ -d /sys/fs/cgroup/cpu ] && [ -w /sys/fs/cgroup/cpu ]; then
  cg=/sys/fs/cgroup/cpu/cargohold-servebench.$$
  mkdir "$cg"
  echo 100000 >"$cg/cpu.cfs_period_us"
  echo 50000 >"$cg/cpu.cfs_quota_us"
fi
if [ -n "$cg" ]; then
  for p in "$dist_pid" "$ours_pid"; do echo "$p" >"$cg/cgroup.procs"; done
  for r in $(seq 1 "$runs"); do
    for who in dist ours; do
      t=$(pull16 "${!who}")
      echo "pull16-halfcore-$who $t" >>"$work/results"
    done
  done
  parent=$(dirname "$cg")
  for p in "$dist_pid" "$ours_pid"; do echo "$p" >"$parent/cgroup.procs"; done
  rmdir "$cg"
else
  echo "no writable cpu cgroup here: the half-core pulls are not measured" >&2
fi
echo "hwm-dist $(hwm_kib "$dist_pid")" >>"$work/results"
echo "hwm-ours $(hwm_kib "$ours_pid")" >>"$work/results"

python3 - "$work/results" "$bytes" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    k, v = line.split()
    rows.setdefault(k, []).append(float(v))
size = int(sys.argv[2])
med = {k: statistics.median(v) for k, v in rows.items()}
for k in sorted(med):
    print(f"{k:16} median {med[k]:.3f}  (runs: {' '.join(f'{x:.3f}' for x in rows[k])})")
print(f"push: server CPU ours/distribution = {med['push-cpu-ours'] / med['push-cpu-dist']:.2f}")
for who in ("dist", "ours"):
    print(f"16 concurrent pulls, {who}: {16 * size / med['pull16-' + who] / 1e6:.0f} MB/s")
print(f"16 concurrent pulls: ours/distribution throughput = {med['pull16-dist'] / med['pull16-ours']:.2f}x")
print(f"16 concurrent pulls: server CPU ours/distribution = {med['pull16-cpu-ours'] / med['pull16-cpu-dist']:.2f}")
print(f"16 concurrent pulls by curl: ours/distribution throughput = {med['pull16-curl-dist'] / med['pull16-curl-ours']:.2f}x")
if "pull16-halfcore-ours" in med:
    for who in ("dist", "ours"):
        print(f"16 concurrent pulls, each server held to half a core, {who}: {16 * size / med['pull16-halfcore-' + who] / 1e6:.0f} MB/s")
    print(f"16 concurrent pulls, half a core each: ours/distribution throughput = {med['pull16-halfcore-dist'] / med['pull16-halfcore-ours']:.2f}x")
print(f"peak RSS: ours {med['hwm-ours'] / 1024:.1f} MiB, distribution {med['hwm-dist'] / 1024:.1f} MiB")
PY
