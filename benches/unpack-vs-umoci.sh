#!/usr/bin/env bash
# Unpack benchmark: `cargohold unpack` vs `umoci unpack` vs the physical limit
# (`gzip -dc` of every layer to /dev/null plus `tar -x` of the inflated layers),
# on the same target filesystem, alternating runs, medians and ratios printed.
#   usage: benches/unpack-vs-umoci.sh OCI_LAYOUT TAG [TARGET_DIR] [RUNS]
# OCI_LAYOUT/TAG: e.g. the reference images of ../shared/images/make-images.sh
# (tag multi). TARGET_DIR defaults to a fresh tmpfs (see MACHINE-NOTES.md:
# creating files right after deleting many is slow on the root disk here).
# Needs: umoci, gzip, tar, python3, GNU time (/usr/bin/time, package "time").
set -euo pipefail
layout=${1:?usage: unpack-vs-umoci.sh OCI_LAYOUT TAG [TARGET_DIR] [RUNS]}
tag=${2:?tag}
target=${3:-}
runs=${4:-5}
cd "$(dirname "$0")/.."
cargo build --release --quiet -p cargohold
ch=$PWD/target/release/cargohold
if [ -z "$target" ]; then
  target=$(mktemp -d /tmp/cargohold-bench.XXXXXX)
  mount -t tmpfs -o size=8g tmpfs "$target"
  trap 'umount "$target"; rmdir "$target"' EXIT
fi
export CARGOHOLD_STORE=$target/store
"$ch" copy -q "oci:$layout:$tag" "bench/image:$tag" >/dev/null
cp -r "$layout" "$target/layout"
layers=$(python3 - "$target/layout" "$tag" <<'PY'
import json, sys
root, tag = sys.argv[1], sys.argv[2]
idx = json.load(open(f"{root}/index.json"))
d = next(m for m in idx["manifests"] if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag)
m = json.load(open(f"{root}/blobs/sha256/{d['digest'].split(':')[1]}"))
print(" ".join(f"{root}/blobs/sha256/{l['digest'].split(':')[1]}" for l in m["layers"]))
PY
)
i=0
for l in $layers; do gzip -dc "$l" >"$target/layer$i.tar"; i=$((i + 1)); done
t() { /usr/bin/time -f "%e %M" "$@" 2>&1 >/dev/null | tail -n 1; }
: >"$target/results"
for r in $(seq 1 "$runs"); do
  echo "ours $(t "$ch" unpack "bench/image:$tag" "$target/ours$r")" >>"$target/results"
  echo "umoci $(t umoci unpack --image "$target/layout:$tag" "$target/umoci$r")" >>"$target/results"
  echo "gzip $(t sh -c "for l in $layers; do gzip -dc \$l >/dev/null; done")" >>"$target/results"
  mkdir "$target/tar$r"
  echo "tar $(t sh -c "for f in $target/layer*.tar; do tar -xf \$f -C $target/tar$r; done")" >>"$target/results"
  rm -rf "$target/ours$r" "$target/umoci$r" "$target/tar$r"
done
python3 - "$target/results" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
med = {k: statistics.median(float(r[1]) for r in rows if r[0] == k) for k in ("ours", "umoci", "gzip", "tar")}
rss = {k: max(int(r[2]) for r in rows if r[0] == k) for k in ("ours", "umoci")}
limit = med["gzip"] + med["tar"]
print(f"cargohold unpack: {med['ours']:.2f} s (peak RSS {rss['ours'] / 1024:.1f} MiB)")
print(f"umoci unpack:     {med['umoci']:.2f} s (peak RSS {rss['umoci'] / 1024:.1f} MiB)")
print(f"physical limit:   {limit:.2f} s (gzip -dc {med['gzip']:.2f} s + tar -x {med['tar']:.2f} s)")
print(f"speed-up over umoci: {med['umoci'] / med['ours']:.2f}x; time / physical limit: {med['ours'] / limit:.2f}x")
PY
