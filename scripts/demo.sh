#!/usr/bin/env bash
# The main job, end to end: start our registry, make a busybox image with layerstore (as an
# OCI layout and a docker-archive), push it into the registry, pull it back with docker and
# run it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
out=${PYBUILD_DEMO_DIR:-$PWD/.work/demo}
rm -rf "$out"; mkdir -p "$out"
port=$(.venv/bin/python -c 'from registry.testing.processes import free_port; print(free_port())')
registry="127.0.0.1:$port"

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
if ! /usr/bin/docker info >/dev/null 2>&1; then
  echo "== starting dockerd (log: $out/dockerd.log)"
  dockerd >"$out/dockerd.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 90); do /usr/bin/docker info >/dev/null 2>&1 && break; sleep 1; done
fi
echo "== starting the registry on $registry (data: $out/registry, log: $out/registry.log)"
.venv/bin/registry serve --addr "$registry" --root "$out/registry" >"$out/registry.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 60); do curl -fs "http://$registry/v2/" >/dev/null && break; sleep 0.5; done

echo "== building the busybox example image"
.venv/bin/python examples/busybox_image.py "$out" --name examples/busybox:local
echo "== pushing it: skopeo copy oci:$out/oci-layout:local docker://$registry/examples/busybox:local"
skopeo copy --dest-tls-verify=false "oci:$out/oci-layout:local" "docker://$registry/examples/busybox:local"
echo "== tags in the registry: $(curl -fs "http://$registry/v2/examples/busybox/tags/list")"
echo "== pulling it back: docker pull $registry/examples/busybox:local"
/usr/bin/docker pull "$registry/examples/busybox:local"
echo "== running it"
/usr/bin/docker run --rm "$registry/examples/busybox:local"
/usr/bin/docker rmi "$registry/examples/busybox:local" >/dev/null
echo "== also loadable offline: docker load -i $out/docker-archive.tar"
/usr/bin/docker load -i "$out/docker-archive.tar"
echo "== done: registry data in $out/registry, OCI layout in $out/oci-layout"
