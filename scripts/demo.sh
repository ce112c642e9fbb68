#!/usr/bin/env bash
# The README's first command: from a fresh clone to a private registry running as a service,
# with an image built by pybuild pushed into it and run by docker.
#
#  1. install what is needed (scripts/install.sh) and start dockerd when it is not running;
#  2. make the base images locally (debootstrap Debian, busybox-static) and push them into a
#     throwaway registry that serves as the docker.io mirror;
#  3. pybuild builds the registry's own image from ./Dockerfile, FROM debian:bookworm
#     through that mirror, and hands it to docker (pybuild save | docker load);
#  4. docker-compose runs it (TLS, token auth, data in a volume, health check); an admin user
#     is made and the registry's CA is trusted by docker and pybuild;
#  5. docker login and pybuild login; pybuild builds examples/dockerfiles/heredocs and pushes
#     it; docker pulls and runs it; docker-compose down and up, and the image is still there.
#
# The registry service stays up at the end; the summary says where everything is and how to
# stop it. Without a Docker engine (none installed or none can start) the same flow runs our
# registry process directly, pybuild pulls and runs the image, and the registry stops with
# the script (the summary says how to start it again).
#
# With --ha the registry runs scaled out instead (docker-compose.ha.yml): PostgreSQL and a
# single-node Ceph RGW (images built here from the same Debian base, deploy/ha/Dockerfile),
# three replicas of the registry image and HAProxy in front of them (round-robin). An image
# is built and pushed through the balancer, pulled back and run by docker, and pulled again
# with one replica stopped. It needs a Docker engine.
#
# Settings (environment): REGISTRY_PORT (default 5000, or a free port when 5000 is taken),
# PYBUILD_DEMO_DIR (default .work/demo), PYBUILD_DEMO_PROJECT (compose project, "pybuild"),
# PYBUILD_DEMO_ENGINE (auto, docker or none), REGISTRY_IMAGE (pybuild/registry:latest),
# PYBUILD_ROOT (the pybuild store, default .work/demo/pybuild), PYBUILD_DEMO_INSTALL=0 (do not
# run scripts/install.sh, when it ran already), and docker-compose.yml's REGISTRY_* variables.
set -euo pipefail
ha=0
for arg in "$@"; do
  case $arg in
    --ha) ha=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) printf 'demo: unknown argument %s (only --ha)\n' "$arg" >&2; exit 2 ;;
  esac
done
cd "$(dirname "$0")/.."
repo=$PWD
started=$SECONDS

say() { printf '\n== [%3ds] %s\n' "$((SECONDS - started))" "$*"; }
note() { printf '   %s\n' "$*"; }
fail() { printf 'demo: %s\n' "$*" >&2; exit 1; }

work=${PYBUILD_DEMO_DIR:-$repo/.work/demo}
mkdir -p "$work"
if [ "${PYBUILD_DEMO_INSTALL:-1}" = 0 ]; then
  say "not running scripts/install.sh (PYBUILD_DEMO_INSTALL=0)"
else
  say "installing: apt packages and ./.venv (scripts/install.sh; log: $work/install.log)"
  if ! bash scripts/install.sh >"$work/install.log" 2>&1; then
    tail -n 30 "$work/install.log"
    fail "scripts/install.sh failed (log: $work/install.log)"
  fi
  grep '^== ' "$work/install.log" | sed 's/^== /   /' || true
fi

project=${PYBUILD_DEMO_PROJECT:-pybuild}
[ "$ha" = 0 ] || project=${PYBUILD_DEMO_PROJECT:-pybuild-ha}
engine=${PYBUILD_DEMO_ENGINE:-auto}
image=${REGISTRY_IMAGE:-pybuild/registry:latest}
docker=/usr/bin/docker
py=$repo/.venv/bin/python
pybuild=$repo/.venv/bin/pybuild
registry=$repo/.venv/bin/registry
export PYBUILD_ROOT=${PYBUILD_ROOT:-$work/pybuild}
case $engine in auto|docker|none) ;; *) fail "PYBUILD_DEMO_ENGINE must be auto, docker or none" ;; esac

tmp=$(mktemp -d "$work/tmp.XXXXXX")
pids=()            # processes this script started and stops on exit
dockerd_pid=""     # dockerd, when this script started it (kept running on success)
succeeded=0
cleanup() {
  local pid
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [ "$succeeded" = 0 ] && [ -n "$dockerd_pid" ]; then
    kill "$dockerd_pid" 2>/dev/null || true
    wait "$dockerd_pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

port_in_use() { (: <"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() { "$py" -c 'from registry.testing.processes import free_port; print(free_port())'; }
wait_for() {  # wait_for SECONDS COMMAND...: until COMMAND succeeds
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.5
  done
}

# -- the Docker engine -----------------------------------------------------------------
use_docker=0
if [ "$engine" != none ]; then
  if ! "$docker" info >/dev/null 2>&1; then
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
      say "starting docker (systemctl start docker)"
      systemctl start docker || true
      wait_for 30 "$docker" info || true
    fi
    if ! "$docker" info >/dev/null 2>&1 && command -v dockerd >/dev/null; then
      say "starting dockerd (log: $work/dockerd.log)"
      setsid dockerd >"$work/dockerd.log" 2>&1 </dev/null &
      dockerd_pid=$!
      if ! wait_for 90 "$docker" info; then
        kill "$dockerd_pid" 2>/dev/null || true
        wait "$dockerd_pid" 2>/dev/null || true
        dockerd_pid=""
        note "dockerd did not start; the end of its log:"
        tail -n 5 "$work/dockerd.log" | sed 's/^/   | /'
      fi
    fi
  fi
  if "$docker" info >/dev/null 2>&1; then
    use_docker=1
  elif [ "$engine" = docker ]; then
    fail "no Docker engine answers (PYBUILD_DEMO_ENGINE=docker)"
  else
    say "no Docker engine can run here: the same flow without docker and compose"
  fi
fi
[ "$ha" = 0 ] || [ "$use_docker" = 1 ] || fail "--ha needs a Docker engine (none answers)"
compose=(docker-compose -p "$project" -f "$repo/docker-compose.yml")
ha_service=registry  # the service whose published port is the registry's address
if [ "$ha" = 1 ]; then
  compose=(docker-compose -p "$project" -f "$repo/docker-compose.ha.yml")
  ha_service=balancer
  # The database password and the S3 keys, made once and kept (docker-compose.ha.yml reads
  # them from the environment).
  ha_secrets=$work/ha-secrets.env
  if [ ! -s "$ha_secrets" ]; then
    (umask 077 && "$py" - >"$ha_secrets" <<'PY'
import secrets
print(f"REGISTRY_DB_PASSWORD={secrets.token_hex(16)}")
print(f"REGISTRY_S3_ACCESS_KEY=PYB{secrets.token_hex(8).upper()}")
print(f"REGISTRY_S3_SECRET_KEY={secrets.token_hex(20)}")
PY
    )
  fi
  set -a
  # shellcheck source=/dev/null
  source "$ha_secrets"
  set +a
fi

# -- the registry's port -----------------------------------------------------------------
if [ -z "${REGISTRY_PORT:-}" ]; then
  REGISTRY_PORT=5000
  ours=""
  [ "$use_docker" = 1 ] && ours=$("${compose[@]}" port "$ha_service" 5000 2>/dev/null || true)
  if port_in_use 5000 && [ "$ours" != "127.0.0.1:5000" ]; then
    REGISTRY_PORT=$(free_port)
    note "port 5000 is taken: using $REGISTRY_PORT"
  fi
fi
export REGISTRY_PORT REGISTRY_IMAGE=$image
addr=127.0.0.1:$REGISTRY_PORT
port_env=""  # what docker-compose needs to be told again when the port is not 5000
[ "$REGISTRY_PORT" = 5000 ] || port_env="REGISTRY_PORT=$REGISTRY_PORT "
example=$addr/examples/heredocs:latest

# -- base images and the mirror ------------------------------------------------------------
say "making the base images: debootstrap Debian bookworm (cached in /var/cache/pybuild-tests), busybox-static"
"$py" - "$tmp/bases" <<'PY'
import sys
from pathlib import Path

from tests.builder.bases import make_base_images

bases = make_base_images(Path(sys.argv[1]))
took = f"{bases.debootstrap_seconds:.0f} s" if bases.debootstrap_seconds else "cached"
print(f"   debootstrap: {took}")
for base in bases.images:
    print(f"   {base.name}: {base.manifest_digest}")
PY

mirror_port=$(free_port)
mirror=127.0.0.1:$mirror_port
say "starting a throwaway registry as the docker.io mirror on http://$mirror"
"$registry" serve --addr "$mirror" --root "$tmp/mirror" --workers 1 --no-access-log \
  >"$tmp/mirror.log" 2>&1 &
pids+=($!)
wait_for 30 curl -fs "http://$mirror/v2/" || { cat "$tmp/mirror.log"; fail "the mirror did not start"; }
for name in busybox:latest debian:bookworm; do
  "$pybuild" --root "$tmp/seed" load -q -i "$tmp/bases/${name/:/-}.tar" >/dev/null
  "$pybuild" --root "$tmp/seed" tag "$name" "$mirror/library/$name"
  "$pybuild" --root "$tmp/seed" push --progress=quiet --insecure-registry "$mirror" \
    "$mirror/library/$name" >/dev/null
  note "pushed $mirror/library/$name"
done
daemon_json=$tmp/daemon.json
printf '{"registry-mirrors": ["http://%s"], "insecure-registries": ["%s"]}\n' \
  "$mirror" "$mirror" >"$daemon_json"

# -- the registry image, built by pybuild -----------------------------------------------
say "pybuild build -t $image . (FROM debian:bookworm through the mirror; log: $work/build-registry.log)"
secret=()
# Behind a network that intercepts TLS, pip needs the host's CA bundle (see the Dockerfile).
bundle=/etc/ssl/certs/ca-certificates.crt
[ -r "$bundle" ] && secret=(--secret "id=cacert,src=$bundle")
if ! "$pybuild" build --pull --progress=plain --registry-config "$daemon_json" "${secret[@]}" \
     --iidfile "$tmp/registry.iid" -t "$image" . >"$work/build-registry.log" 2>&1; then
  tail -n 30 "$work/build-registry.log"
  fail "building the registry image failed (log: $work/build-registry.log)"
fi
grep -m1 'pull docker.io/library/debian:bookworm' "$work/build-registry.log" | sed 's/^/   /' || true
note "$(grep -c ' CACHED$' "$work/build-registry.log" || true) steps cached; image ID $(cat "$tmp/registry.iid")"

password_file=$work/admin-password
if [ ! -s "$password_file" ]; then
  (umask 077 && "$py" -c 'import secrets; print(secrets.token_urlsafe(18))' >"$password_file")
fi
certs=/etc/docker/certs.d/$addr
mkdir -p "$certs"

build_and_push_example() {
  say "pybuild login $addr, then pybuild build --push examples/dockerfiles/heredocs (FROM busybox through the mirror)"
  "$pybuild" login -u admin --password-stdin "$addr" <"$password_file"
  if ! "$pybuild" build --pull --progress=plain --registry-config "$daemon_json" -t "$example" \
       --push examples/dockerfiles/heredocs >"$work/build-example.log" 2>&1; then
    tail -n 30 "$work/build-example.log"
    fail "building or pushing the example failed (log: $work/build-example.log)"
  fi
  grep -m1 "pushed $example" "$work/build-example.log" | sed 's/^#[0-9]* [0-9.]* /   /' || true
}

if [ "$ha" = 1 ]; then
  # shellcheck source=scripts/demo-ha.sh
  source "$repo/scripts/demo-ha.sh"
elif [ "$use_docker" = 1 ]; then
  # -- docker-compose ------------------------------------------------------------------
  wait_healthy() {
    local id status deadline=$((SECONDS + 120))
    id=$("${compose[@]}" ps -q registry)
    while :; do
      status=$("$docker" inspect -f '{{.State.Health.Status}}' "$id")
      [ "$status" = healthy ] && break
      if [ "$status" = unhealthy ] || [ "$SECONDS" -ge "$deadline" ]; then
        "${compose[@]}" logs --tail 40 registry
        fail "the registry is $status"
      fi
      sleep 1
    done
    note "healthy: $("$docker" inspect -f '{{.Name}} {{.State.Health.Status}}' "$id")"
  }
  say "pybuild save $image | docker load"
  previous=$("$docker" image inspect -f '{{.Id}}' "$image" 2>/dev/null || true)
  "$pybuild" save "$image" | "$docker" load
  say "docker-compose -p $project up -d (https://$addr)"
  "${compose[@]}" up -d
  wait_healthy
  if [ -n "$previous" ] && [ "$previous" != "$("$docker" image inspect -f '{{.Id}}' "$image")" ]; then
    "$docker" rmi "$previous" >/dev/null 2>&1 || true  # the image of an earlier run
  fi
  say "adding the user admin (docker-compose exec registry registry user add admin --password-stdin)"
  "${compose[@]}" exec -T registry registry user add admin --password-stdin --replace \
    <"$password_file"
  say "trusting the registry's CA: $certs/ca.crt"
  "${compose[@]}" exec -T registry cat /var/lib/registry/tls/trust/ca.crt >"$certs/ca.crt"
  cp "$certs/ca.crt" "$work/ca.crt"
  say "docker login $addr"
  "$docker" login -u admin --password-stdin "$addr" <"$password_file"
  build_and_push_example
  say "docker pull $example && docker run --rm $example"
  "$docker" rmi -f "$example" >/dev/null 2>&1 || true
  "$docker" pull -q "$example"
  "$docker" run --rm "$example" | sed 's/^/   | /'
  say "docker-compose down, then up -d: the data stays in the volume ${project}_registry-data"
  "${compose[@]}" down
  "${compose[@]}" up -d
  wait_healthy
  "$docker" rmi "$example" >/dev/null
  "$docker" pull -q "$example"
  note "docker run after the restart: $("$docker" run --rm "$example" | sed -n 1p)"
  succeeded=1
  cat <<EOF

== done in $((SECONDS - started)) s. A private registry runs as a service:
   registry    https://$addr  (docker-compose -p $project, service "registry", image $image)
   users       admin, password in $password_file; docker and pybuild are logged in
               (${DOCKER_CONFIG:-$HOME/.docker}/config.json). More users:
               docker-compose -p $project exec -T registry registry user add NAME --password-stdin
   CA          $certs/ca.crt (a copy: $work/ca.crt; exported in the volume ${project}_registry-ca)
   data        volume ${project}_registry-data; settings: deploy/registry.toml and the
               REGISTRY_* variables in docker-compose.yml (docs/registry.md)
   image       $example: built by pybuild, pulled and run by docker
   pybuild     store $PYBUILD_ROOT; build logs $work/build-registry.log, $work/build-example.log
   stop/start  docker-compose -p $project down   /   ${port_env}docker-compose -p $project up -d
               (down -v also deletes the data)
EOF
  if [ -n "$dockerd_pid" ]; then
    note "dockerd (PID $dockerd_pid, started by this script) keeps running; log: $work/dockerd.log"
  fi
else
  # -- no Docker engine: our registry process ------------------------------------------
  root=$work/registry
  serve=("$registry" serve --config "$repo/deploy/registry.toml" --root "$root" --addr "$addr"
         --workers 2)
  start_registry() {
    "${serve[@]}" >>"$work/registry.log" 2>&1 &
    registry_pid=$!
    pids+=("$registry_pid")
    wait_for 60 curl -fs --cacert "$root/tls/ca.crt" "https://$addr/healthz" \
      || { tail -n 20 "$work/registry.log"; fail "the registry did not start"; }
    note "registry PID $registry_pid, healthy: https://$addr/healthz"
  }
  say "pybuild save -o $work/registry-image.tar $image (docker load -i it where docker runs)"
  "$pybuild" save -o "$work/registry-image.tar" "$image"
  say "${serve[*]#"$repo/.venv/bin/"}"
  start_registry
  say "adding the user admin (registry user add admin --password-stdin)"
  "$registry" user add admin --password-stdin --replace --root "$root" \
    --config "$repo/deploy/registry.toml" <"$password_file"
  say "trusting the registry's CA: $certs/ca.crt"
  cp "$root/tls/ca.crt" "$certs/ca.crt"
  build_and_push_example
  say "pybuild pull $example into an empty store, pybuild run --rm it"
  "$pybuild" --root "$tmp/puller" pull --progress=quiet "$example"
  "$pybuild" --root "$tmp/puller" run --rm "$example" | sed 's/^/   | /'
  say "stopping the registry and starting it again: the data stays in $root"
  kill "$registry_pid"
  wait "$registry_pid" 2>/dev/null || true
  start_registry
  "$pybuild" --root "$tmp/puller-2" pull --progress=quiet "$example"
  note "pybuild run after the restart: $("$pybuild" --root "$tmp/puller-2" run --rm "$example" | sed -n 1p)"
  succeeded=1
  cat <<EOF

== done in $((SECONDS - started)) s (without a Docker engine; the registry stops with this script):
   registry    ${serve[*]}
   users       admin, password in $password_file; pybuild is logged in
               (${DOCKER_CONFIG:-$HOME/.docker}/config.json)
   CA          $certs/ca.crt ($root/tls/ca.crt)
   data        $root (log: $work/registry.log)
   image       $example: built and pushed by pybuild, pulled and run by pybuild
   the registry image: $work/registry-image.tar (docker load -i), pybuild store $PYBUILD_ROOT
EOF
fi
