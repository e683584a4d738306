#!/usr/bin/env bash
# cargohold build vs `buildah build --isolation chroot --storage-driver vfs` on
# a busybox base: a cold one-RUN build (no build cache, base image present),
# a fully cached rebuild, and the cost of one extra `RUN true` step (from a
# file with 11 RUN steps against one with 1). Medians of 5 runs, as root,
# on a tmpfs.
# With the reference images (../shared/images/make-images.sh OUT; pass
# OUT/oci), also the issue's reference Dockerfile: FROM the 3-layer image,
# a RUN that writes a file, a COPY of 1000 small files, ENV and CMD; cold
# means the base is in the store but no layer is unpacked or cached yet.
#   usage: benches/build-vs-buildah.sh [REFERENCE_OCI_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
command -v buildah >/dev/null || { echo "buildah is needed (apt-get install -y buildah)" >&2; exit 1; }
cargo build --release --quiet -p cargohold
ch=$PWD/target/release/cargohold
# Both tools work on a tmpfs: this machine's ext4 creates files 4-15x slower
# right after a delete (../shared/MACHINE-NOTES.md), which every cold run does.
w=$(mktemp -d /tmp/cargohold-bench-build.XXXXXX)
mount -t tmpfs -o size=8g tmpfs "$w"
trap 'umount "$w"; rm -rf "$w"' EXIT

mkdir -p "$w/rootfs/bin" "$w/rootfs/etc"
cp /bin/busybox "$w/rootfs/bin/"
for a in $(/bin/busybox --list | grep -vx busybox); do ln -s busybox "$w/rootfs/bin/$a"; done
echo 'root:x:0:0::/root:/bin/sh' >"$w/rootfs/etc/passwd"
tar -C "$w/rootfs" -czf "$w/rootfs.tar.gz" .
"$ch" --store "$w/base" import "$w/rootfs.tar.gz" bench/bb:1 >/dev/null
"$ch" --store "$w/base" save bench/bb:1 --format oci -o "$w/bb.oci.tar" >/dev/null
bah=(buildah --root "$w/bah" --runroot "$w/bahrun" --storage-driver vfs)
"${bah[@]}" pull -q "oci-archive:$w/bb.oci.tar" >/dev/null
base=$("${bah[@]}" images -q | head -1)

mkdir -p "$w/one" "$w/many"
printf 'FROM %s\nRUN echo hi > /hi\n' bench/bb:1 >"$w/one/Dockerfile"
printf 'FROM %s\nRUN echo hi > /hi\n' "$base" >"$w/one/Dockerfile.buildah"
{ echo "FROM bench/bb:1"; for i in $(seq 0 10); do echo "RUN true"; done; } >"$w/many/Dockerfile"
{ echo "FROM $base"; for i in $(seq 0 10); do echo "RUN true"; done; } >"$w/many/Dockerfile.buildah"

now() { date +%s.%N; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# A fresh store per cold run: the base image copied in, no layer or build cache.
cold_ch() {
  rm -rf "$w/s" && cp -a "$w/base" "$w/s" && rm -rf "$w/s/.cargohold"
  local t0; t0=$(now); "$ch" -q --store "$w/s" build -t out:1 "$1" >/dev/null; echo "$(now) - $t0" | bc
}
cold_bah() {
  local t0; t0=$(now)
  "${bah[@]}" build -q --isolation chroot --layers=false -f "$1/Dockerfile.buildah" -t "out$RANDOM" "$1" >/dev/null 2>&1
  echo "$(now) - $t0" | bc
}
cached_ch() { local t0; t0=$(now); "$ch" -q --store "$w/s" build -t out:2 "$1" >/dev/null; echo "$(now) - $t0" | bc; }

for tool in ch bah; do
  for d in one many; do
    for _ in 1 2 3 4 5; do "cold_$tool" "$w/$d"; done | median >"$w/$tool-$d"
  done
done
for _ in 1 2 3 4 5; do cached_ch "$w/one"; done | median >"$w/ch-cached"

c1=$(cat "$w/ch-one"); b1=$(cat "$w/bah-one"); cm=$(cat "$w/ch-many"); bm=$(cat "$w/bah-many")
printf 'cold one-RUN build:   cargohold %.3f s, buildah %.3f s (%.1fx faster)\n' "$c1" "$b1" "$(echo "$b1 / $c1" | bc -l)"
printf 'cached rebuild:       cargohold %.3f s\n' "$(cat "$w/ch-cached")"
printf 'per extra RUN true:   cargohold %.1f ms, buildah %.1f ms\n' \
  "$(echo "($cm - $c1) * 100" | bc -l)" "$(echo "($bm - $b1) * 100" | bc -l)"

ref=${1:-}
[ -n "$ref" ] || exit 0
"$ch" --store "$w/base" copy "oci:$ref:multi" bench/multi:1 >/dev/null
"${bah[@]}" pull -q "oci:$ref:multi" >/dev/null
mbase=$("${bah[@]}" images --format '{{.ID}} {{.Size}}' | sort -k2 -h | tail -1 | cut -d' ' -f1)
mkdir -p "$w/ref/files"
for i in $(seq 1 1000); do printf 'file %d\n' "$i" >"$w/ref/files/f$i.txt"; done
body='RUN echo built > /built.txt\nCOPY files/ /srv/files/\nENV APP_HOME=/srv\nCMD ["/bin/bash"]\n'
printf "FROM bench/multi:1\n$body" >"$w/ref/Dockerfile"
printf "FROM $mbase\n$body" >"$w/ref/Dockerfile.buildah"
for _ in 1 2 3 4 5; do cold_ch "$w/ref"; done | median >"$w/ch-ref"
# buildah keeps its base unpacked in its storage; the same for us: the
# base's layers already in the layer cache, no build cache, no step layer.
"$ch" -q --store "$w/base" run bench/multi:1 -- true
cold_ch_unpacked() {
  rm -rf "$w/s" && cp -a "$w/base" "$w/s" && rm -rf "$w/s/.cargohold/build-cache"
  local t0; t0=$(now); "$ch" -q --store "$w/s" build -t out:1 "$1" >/dev/null; echo "$(now) - $t0" | bc
}
for _ in 1 2 3 4 5; do cold_ch_unpacked "$w/ref"; done | median >"$w/ch-ref-unpacked"
for _ in 1 2 3 4 5; do cold_bah "$w/ref"; done | median >"$w/bah-ref"
for _ in 1 2 3 4 5; do cached_ch "$w/ref"; done | median >"$w/ch-ref-cached"
cr=$(cat "$w/ch-ref"); cu=$(cat "$w/ch-ref-unpacked"); br=$(cat "$w/bah-ref")
printf 'reference Dockerfile (3-layer base, RUN, COPY 1000 files, ENV, CMD), base unpacked for both: cargohold %.3f s, buildah %.3f s (%.1fx faster)\n' \
  "$cu" "$br" "$(echo "$br / $cu" | bc -l)"
printf 'reference Dockerfile, cargohold from blobs only (unpacking the base included): %.3f s\n' "$cr"
printf 'reference Dockerfile, fully cached rebuild: cargohold %.3f s\n' "$(cat "$w/ch-ref-cached")"
