#!/usr/bin/env bash
# The main job, end to end: make a busybox base image with layerstore, write it as an OCI
# layout and a docker-archive, check the layout with skopeo, `docker load` the archive and run it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
out=${PYBUILD_DEMO_DIR:-$PWD/.work/demo}
rm -rf "$out"; mkdir -p "$out"

started=""
if ! /usr/bin/docker info >/dev/null 2>&1; then
  echo "== starting dockerd (log: $out/dockerd.log)"
  dockerd >"$out/dockerd.log" 2>&1 &
  started=$!
  for _ in $(seq 1 90); do /usr/bin/docker info >/dev/null 2>&1 && break; sleep 1; done
fi
cleanup() { if [ -n "$started" ]; then kill "$started"; wait "$started" || true; fi; }
trap cleanup EXIT

echo "== building the busybox base image"
.venv/bin/python examples/busybox_image.py "$out" --name pybuild-example/busybox:local
echo "== skopeo inspect oci:$out/oci-layout:local"
skopeo inspect --raw "oci:$out/oci-layout:local" | head -c 400; echo
echo "== docker load -i $out/docker-archive.tar"
/usr/bin/docker load -i "$out/docker-archive.tar"
echo "== docker run --rm pybuild-example/busybox:local"
/usr/bin/docker run --rm pybuild-example/busybox:local
echo "== done: the store is in $out/store, the layout in $out/oci-layout"
