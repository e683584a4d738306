#!/usr/bin/env bash
# `cargohold run IMG true`, hardened (podman's default confinement), against
# `podman run --rm` and bare `crun run` of the same busybox root, and the
# cost of the hardening itself (the same run --privileged: no seccomp, no
# masks, every capability). Means of 30 runs after 3 warm-ups (hyperfine),
# as root, store and bundle on a tmpfs.
#   usage: benches/run-vs-podman.sh
set -euo pipefail
cd "$(dirname "$0")/.."
for t in podman crun hyperfine pasta; do
  command -v "$t" >/dev/null || { echo "$t is needed (apt-get install -y podman crun hyperfine passt)" >&2; exit 1; }
done
cargo build --release --quiet -p cargohold
ch=$PWD/target/release/cargohold
w=$(mktemp -d /tmp/cargohold-bench-run.XXXXXX)
mount -t tmpfs -o size=2g tmpfs "$w"
image=localhost/cargohold-bench-bb:1
trap 'podman rmi -f "$image" >/dev/null 2>&1 || true; umount "$w"; rm -rf "$w"' EXIT

mkdir -p "$w/rootfs/bin" "$w/rootfs/etc"
cp /bin/busybox "$w/rootfs/bin/"
for a in $(/bin/busybox --list | grep -vx busybox); do ln -s busybox "$w/rootfs/bin/$a"; done
echo 'root:x:0:0::/root:/bin/sh' >"$w/rootfs/etc/passwd"
tar -C "$w/rootfs" -cf "$w/rootfs.tar" .
"$ch" --store "$w/store" import "$w/rootfs.tar" bench/bb:1 >/dev/null
podman import -q "$w/rootfs.tar" "$image" >/dev/null
# A crun bundle with crun's own default spec (as root, no terminal).
mkdir -p "$w/bundle" && cp -a "$w/rootfs" "$w/bundle/rootfs"
(cd "$w/bundle" && crun spec && sed -i 's/"terminal": true/"terminal": false/; s/"sh"$/"true"/' config.json)
python3 - "$w/bundle/config.json" <<'PY'
import json, sys
p = sys.argv[1]; c = json.load(open(p))
c["process"]["args"] = ["/bin/true"]
c["process"].pop("rlimits", None)  # these machines cannot raise RLIMIT_NOFILE
json.dump(c, open(p, "w"))
PY
# crun refuses this hybrid cgroup host unless only cgroup2 is mounted (MACHINE-NOTES).
cat >"$w/crun.sh" <<SH
#!/bin/sh
exec unshare -m --propagation private sh -c 'mount -t cgroup2 none /sys/fs/cgroup && crun --cgroup-manager=disabled --root $w/crun-state run --bundle $w/bundle bench-\$\$'
SH
chmod +x "$w/crun.sh"
podman=(podman run --rm --runtime runc --cgroup-manager cgroupfs --ulimit nofile=20000:20000 --ulimit nproc=4096:4096)

hyperfine -N --warmup 3 --runs 30 --export-json "$w/run.json" \
  -n "cargohold run --network none" "$ch --store $w/store run --network none bench/bb:1 -- true" \
  -n "cargohold run (private network, pasta)" "$ch --store $w/store run bench/bb:1 -- true" \
  -n "cargohold run --privileged --network none" "$ch --store $w/store run --privileged --network none bench/bb:1 -- true" \
  -n "cargohold run --runtime crun --network none" "$ch --store $w/store run --runtime crun --network none bench/bb:1 -- true" \
  -n "podman run --rm --network none" "${podman[*]} --network none $image true" \
  -n "crun run (bare bundle)" "$w/crun.sh" >/dev/null
python3 - "$w/run.json" <<'PY'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
ours = r["cargohold run --network none"]["mean"]
for name, x in r.items():
    print(f"{name:45s} {x['mean']*1000:8.1f} ms ± {x['stddev']*1000:5.1f}   ratio to cargohold: {x['mean']/ours:6.2f}")
print(f"hardening cost per run (hardened - privileged): {(ours - r['cargohold run --privileged --network none']['mean'])*1000:.2f} ms")
PY
