#!/usr/bin/env bash
# Registry benchmark: `cargohold pull` vs `skopeo copy docker://... oci:...`,
# `cargohold push` vs `skopeo copy oci:... docker://...` (each push to a fresh,
# empty registry), `cargohold sync` vs `skopeo sync` of 20 tags (into a fresh
# registry each run), and the loopback limit: the same blobs fetched with
# parallel `curl | sha256sum`. Local `docker-registry` on tmpfs; alternating
# runs; medians and ratios printed.
#   usage: benches/registry-vs-skopeo.sh OCI_LAYOUT TAG [RUNS]
# OCI_LAYOUT/TAG: e.g. the reference images of ../shared/images/make-images.sh
# (tag multi: 3 layers, 92 MB). Needs: docker-registry, skopeo, curl, python3.
set -euo pipefail
layout=${1:?usage: registry-vs-skopeo.sh OCI_LAYOUT TAG [RUNS]}
tag=${2:?tag}
runs=${3:-5}
cd "$(dirname "$0")/.."
cargo build --release --quiet -p cargohold
ch=$PWD/target/release/cargohold
work=$(mktemp -d /tmp/cargohold-regbench.XXXXXX)
mount -t tmpfs -o size=8g tmpfs "$work"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  umount "$work"
  rmdir "$work"
}
trap cleanup EXIT
echo '{"default":[{"type":"insecureAcceptAnything"}]}' >"$work/policy.json"
sk() { skopeo --policy "$work/policy.json" "$@"; }

# start_registry NAME: a registry with storage under $work/NAME; sets reg=host:port.
start_registry() {
  local dir=$work/$1 port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  mkdir -p "$dir"
  printf 'version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:%s\n' \
    "$dir/data" "$port" >"$dir/config.yml"
  docker-registry serve "$dir/config.yml" >/dev/null 2>&1 &
  pids+=($!)
  for _ in $(seq 1 200); do curl -sf "http://127.0.0.1:$port/v2/" >/dev/null && break; sleep 0.05; done
  reg=127.0.0.1:$port
}
stop_last_registry() {
  local last=$((${#pids[@]} - 1))
  kill "${pids[$last]}"
  wait "${pids[$last]}" 2>/dev/null || true
  pids=("${pids[@]:0:$last}")
}

now() { date +%s.%N; }
: >"$work/results"
record() { echo "$1 $(python3 -c "print($3 - $2)")" >>"$work/results"; }

# Pull: one registry seeded by skopeo.
start_registry seeded
sk copy -q --dest-tls-verify=false "oci:$layout:$tag" "docker://$reg/bench/image:$tag"
export CARGOHOLD_STORE=$work/push-store
"$ch" copy -q "oci:$layout:$tag" "bench/image:$tag" >/dev/null
blobs=$(python3 - "$layout" "$tag" <<'PY'
import json, sys
root, tag = sys.argv[1], sys.argv[2]
idx = json.load(open(f"{root}/index.json"))
d = next(m for m in idx["manifests"] if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag)
m = json.load(open(f"{root}/blobs/sha256/{d['digest'].split(':')[1]}"))
print(" ".join(b["digest"] for b in [m["config"]] + m["layers"]))
PY
)
for r in $(seq 1 "$runs"); do
  s=$(now); "$ch" --store "$work/pull-ours$r" -q pull "$reg/bench/image:$tag" >/dev/null; e=$(now)
  record pull-ours "$s" "$e"
  s=$(now); sk copy -q --src-tls-verify=false "docker://$reg/bench/image:$tag" "oci:$work/pull-skopeo$r:$tag"; e=$(now)
  record pull-skopeo "$s" "$e"
  s=$(now)
  (
    for b in $blobs; do (curl -s "http://$reg/v2/bench/image/blobs/$b" | sha256sum >/dev/null) & done
    wait
  )
  e=$(now)
  record pull-limit "$s" "$e"
  rm -rf "$work/pull-ours$r" "$work/pull-skopeo$r"
done
stop_last_registry

# Push: a fresh, empty registry for every run of either tool.
for r in $(seq 1 "$runs"); do
  start_registry "push-ours$r"
  s=$(now); "$ch" -q push "bench/image:$tag" "$reg/bench/image:$tag" >/dev/null; e=$(now)
  record push-ours "$s" "$e"
  stop_last_registry
  start_registry "push-skopeo$r"
  s=$(now); sk copy -q --dest-tls-verify=false "oci:$layout:$tag" "docker://$reg/bench/image:$tag"; e=$(now)
  record push-skopeo "$s" "$e"
  stop_last_registry
  rm -rf "$work/push-ours$r" "$work/push-skopeo$r"
done

# Sync: 20 tags of a repository (the layout's tags in turn) into a fresh,
# empty registry for every run of either tool.
start_registry synced
sync_src=$reg
tags=$(python3 - "$layout" <<'PY'
import json, sys
idx = json.load(open(f"{sys.argv[1]}/index.json"))
print(" ".join(m["annotations"]["org.opencontainers.image.ref.name"] for m in idx["manifests"] if "annotations" in m))
PY
)
read -r -a tag_list <<<"$tags"
for i in $(seq 1 20); do
  t=${tag_list[$((i % ${#tag_list[@]}))]}
  sk copy -q --dest-tls-verify=false "oci:$layout:$t" "docker://$sync_src/bench/many:v$i"
done
for r in $(seq 1 "$runs"); do
  start_registry "sync-ours$r"
  s=$(now); "$ch" -q sync "$sync_src/bench/many" "$reg/mirror" >/dev/null; e=$(now)
  record sync-ours "$s" "$e"
  stop_last_registry
  start_registry "sync-skopeo$r"
  s=$(now)
  sk sync --src docker --dest docker --src-tls-verify=false --dest-tls-verify=false \
    "$sync_src/bench/many" "$reg/mirror" >/dev/null
  e=$(now)
  record sync-skopeo "$s" "$e"
  stop_last_registry
  rm -rf "$work/sync-ours$r" "$work/sync-skopeo$r"
done

python3 - "$work/results" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    k, v = line.split()
    rows.setdefault(k, []).append(float(v))
med = {k: statistics.median(v) for k, v in rows.items()}
for k in sorted(med):
    print(f"{k:12} median {med[k]:.3f} s  (runs: {' '.join(f'{x:.3f}' for x in rows[k])})")
print(f"pull: skopeo/ours = {med['pull-skopeo'] / med['pull-ours']:.2f}x faster")
print(f"pull: ours/limit  = {med['pull-ours'] / med['pull-limit']:.2f}x the loopback limit (parallel curl + sha256sum)")
print(f"push: skopeo/ours = {med['push-skopeo'] / med['push-ours']:.2f}x faster")
print(f"sync of 20 tags: skopeo/ours = {med['sync-skopeo'] / med['sync-ours']:.2f}x faster")
PY
