#!/usr/bin/env bash
# Publish benchmark on a local docker-registry, everything on a tmpfs:
#  1. first conversion of IMAGE (`publish convert-single-image`, flat included)
#     vs `cargohold pull` + `cargohold unpack` of the same image;
#  2. a second run of a wish list of IMAGES tags (default 100) with nothing
#     changed (and how many blob requests it made: none expected), and of
#     IMAGES distinct images (one label apart: a flat each, each walked);
#  3. converting a tag that shares its base with converted images (SHARED);
#  4. publish on push: `cargohold serve --notify` -> `cargohold publish listen`,
#     the time from the end of a push to the image's public path in the tree
#     (a fresh tree each run: every layer converted), less pull+unpack;
#  5. disk used by the tree for the images vs separate unpacked trees.
#   usage: [IMAGES=100] benches/publish-vs-pull-unpack.sh OCI_LAYOUT TAG [SHARED_TAG] [RUNS]
# e.g. the reference images of ../shared/images/make-images.sh: multi, multi-l2.
# Needs: docker-registry, skopeo, curl, python3.
set -euo pipefail
layout=${1:?usage: publish-vs-pull-unpack.sh OCI_LAYOUT TAG [SHARED_TAG] [RUNS]}
tag=${2:?tag}
shared=${3:-}
runs=${4:-5}
cd "$(dirname "$0")/.."
cargo build --release --quiet -p cargohold
ch=$PWD/target/release/cargohold
work=$(mktemp -d /tmp/cargohold-pubbench.XXXXXX)
mount -t tmpfs -o size=12g tmpfs "$work"
pid= srv= lis=
images=${IMAGES:-100}
cleanup() {
  for p in $lis $srv; do kill "$p" 2>/dev/null && { wait "$p" 2>/dev/null || true; }; done
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && { wait "$pid" 2>/dev/null || true; }
  umount "$work"
  rmdir "$work"
}
trap cleanup EXIT
echo '{"default":[{"type":"insecureAcceptAnything"}]}' >"$work/policy.json"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
printf 'version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:%s\n' \
  "$work/registry" "$port" >"$work/registry.yml"
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
pid=$!
reg=127.0.0.1:$port
for _ in $(seq 1 200); do curl -sf "http://$reg/v2/" >/dev/null && break; sleep 0.05; done
skopeo --policy "$work/policy.json" copy -q --dest-tls-verify=false "oci:$layout:$tag" "docker://$reg/bench/image:$tag"
now() { date +%s.%N; }
: >"$work/results"
record() { echo "$1 $(python3 -c "print($3 - $2)")" >>"$work/results"; }

for r in $(seq 1 "$runs"); do
  s=$(now); "$ch" -q publish convert-single-image "http://$reg/bench/image:$tag" "$work/tree$r" --skip-thin-image >/dev/null; e=$(now)
  record publish "$s" "$e"
  s=$(now)
  "$ch" -q --store "$work/store$r" pull "$reg/bench/image:$tag" >/dev/null
  "$ch" -q --store "$work/store$r" unpack "$reg/bench/image:$tag" "$work/unpacked$r" >/dev/null
  e=$(now)
  record pull+unpack "$s" "$e"
  rm -rf "$work/tree$r" "$work/store$r" "$work/unpacked$r"
done

# IMAGES tags of the image in one wish list.
"$ch" -q --store "$work/copy-store" pull "$reg/bench/image:$tag" >/dev/null
for i in $(seq 1 "$images"); do
  "$ch" -q --store "$work/copy-store" push "$reg/bench/image:$tag" "$reg/bench/ten:t$i" >/dev/null
done
printf 'version: 1\ncvmfs_repo: %s\ninput:\n  - "http://%s/bench/ten:*"\n' "$work/ten" "$reg" >"$work/ten.yaml"
"$ch" -q publish convert "$work/ten.yaml" --skip-thin-image >/dev/null
blobs_before=$(grep -c 'GET /v2/bench/ten/blobs/' "$work/registry.log" || true)
for r in $(seq 1 "$runs"); do
  s=$(now); "$ch" -q publish convert "$work/ten.yaml" --skip-thin-image >/dev/null; e=$(now)
  record unchanged-n "$s" "$e"
done
blobs_after=$(grep -c 'GET /v2/bench/ten/blobs/' "$work/registry.log" || true)
# IMAGES distinct images (the same layers, a config each: a flat each).
mkdir "$work/ctx"
for i in $(seq 1 "$images"); do
  printf 'FROM %s\nLABEL n=%s\n' "$reg/bench/image:$tag" "$i" >"$work/ctx/Dockerfile"
  "$ch" -q --store "$work/copy-store" build -t "distinct:$i" "$work/ctx" >/dev/null
  "$ch" -q --store "$work/copy-store" push "distinct:$i" "$reg/bench/distinct:d$i" >/dev/null
done
printf 'version: 1\ncvmfs_repo: %s\ninput:\n  - "http://%s/bench/distinct:*"\n' "$work/distinct" "$reg" >"$work/distinct.yaml"
"$ch" -q publish convert "$work/distinct.yaml" --skip-thin-image >/dev/null
for r in $(seq 1 "$runs"); do
  s=$(now); "$ch" -q publish convert "$work/distinct.yaml" --skip-thin-image >/dev/null; e=$(now)
  record unchanged-distinct "$s" "$e"
done
rm -rf "$work/distinct"

# Publish on push.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
hook=127.0.0.1:$(free_port) srvaddr=127.0.0.1:$(free_port)
"$ch" -q serve --addr "$srvaddr" --root "$work/srv" --notify "http://$hook/events" >"$work/serve.log" 2>&1 &
srv=$!
for _ in $(seq 1 200); do curl -sf "http://$srvaddr/v2/" >/dev/null && break; sleep 0.05; done
for r in $(seq 1 "$runs"); do
  mkdir "$work/pp$r"
  "$ch" -q --store "$work/lstore$r" publish listen "$work/pp$r" --addr "$hook" --queue "$work/q$r" \
    --skip-thin-image >"$work/listen$r.log" 2>&1 &
  lis=$!
  for _ in $(seq 1 200); do curl -s -o /dev/null "http://$hook/" && break; sleep 0.05; done
  "$ch" -q --store "$work/copy-store" push "$reg/bench/image:$tag" "$srvaddr/bench/pp:r$r" >/dev/null
  s=$(now)
  until [ -e "$work/pp$r/$srvaddr/bench/pp:r$r" ]; do sleep 0.01; done
  e=$(now)
  record push-to-published "$s" "$e"
  kill "$lis"; wait "$lis" 2>/dev/null || true; lis=
  rm -rf "$work/pp$r" "$work/lstore$r" "$work/q$r"
done
kill "$srv"; wait "$srv" 2>/dev/null || true; srv=

if [ -n "$shared" ]; then
  skopeo --policy "$work/policy.json" copy -q --dest-tls-verify=false "oci:$layout:$shared" "docker://$reg/bench/image:$shared"
  for r in $(seq 1 "$runs"); do
    "$ch" -q publish convert-single-image "http://$reg/bench/image:$shared" "$work/sh$r" --skip-thin-image >/dev/null
    s=$(now); "$ch" -q publish convert-single-image "http://$reg/bench/image:$tag" "$work/sh$r" --skip-thin-image >/dev/null; e=$(now)
    record shared-base "$s" "$e"
    rm -rf "$work/sh$r"
  done
fi

tree_kb=$(du -sk "$work/ten" | cut -f1)
"$ch" -q --store "$work/one-store" pull "$reg/bench/image:$tag" >/dev/null
"$ch" -q --store "$work/one-store" unpack "$reg/bench/image:$tag" "$work/one" >/dev/null
one_kb=$(du -sk "$work/one" | cut -f1)

python3 - "$work/results" "$tree_kb" "$one_kb" "$blobs_before" "$blobs_after" "$images" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    k, v = line.split()
    rows.setdefault(k, []).append(float(v))
med = {k: statistics.median(v) for k, v in rows.items()}
for k in sorted(med):
    print(f"{k:14} median {med[k]:.3f} s  (runs: {' '.join(f'{x:.3f}' for x in rows[k])})")
print(f"first conversion / (pull + unpack) = {med['publish'] / med['pull+unpack']:.2f}x (target <= 1.2x)")
n = int(sys.argv[6])
print(f"second run of {n} unchanged tags of the image: {med['unchanged-n']:.3f} s (target < 2 s), blob requests {int(sys.argv[5]) - int(sys.argv[4])}")
print(f"second run of {n} unchanged distinct images (a flat each): {med['unchanged-distinct']:.3f} s (target < 2 s)")
late = med['push-to-published'] - med['pull+unpack']
print(f"push to published: {med['push-to-published']:.3f} s, {late:.3f} s beyond pull+unpack (target < 2 s)")
if 'shared-base' in med:
    print(f"new tag sharing the base: {med['shared-base']:.3f} s vs first conversion {med['publish']:.3f} s")
tree, one = int(sys.argv[2]), int(sys.argv[3])
print(f"disk: tree for {n} images {tree/1024:.1f} MiB vs {n} unpacked trees {n*one/1024:.1f} MiB ({n*one/max(tree,1):.1f}x less)")
PY
