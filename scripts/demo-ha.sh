# The --ha part of scripts/demo.sh (sourced by it, after the registry image is built):
# the images of deploy/ha/Dockerfile, docker-compose.ha.yml up, a push through the balancer,
# a pull and a run by docker, and a pull with one replica stopped.
# shellcheck shell=bash disable=SC2154

ha_images=(
  "postgres ${HA_POSTGRES_IMAGE:-pybuild/ha-postgres:latest}"
  "rgw ${HA_RGW_IMAGE:-pybuild/ha-rgw:latest}"
  "haproxy ${HA_HAPROXY_IMAGE:-pybuild/ha-haproxy:latest}"
)
export HA_POSTGRES_IMAGE=${HA_POSTGRES_IMAGE:-pybuild/ha-postgres:latest}
export HA_RGW_IMAGE=${HA_RGW_IMAGE:-pybuild/ha-rgw:latest}
export HA_HAPROXY_IMAGE=${HA_HAPROXY_IMAGE:-pybuild/ha-haproxy:latest}
for entry in "${ha_images[@]}"; do
  target=${entry%% *} tag=${entry#* }
  say "pybuild build --target $target -t $tag -f deploy/ha/Dockerfile . (log: $work/build-ha-$target.log)"
  if ! "$pybuild" build --pull --progress=plain --registry-config "$daemon_json" \
       --target "$target" -f deploy/ha/Dockerfile -t "$tag" . >"$work/build-ha-$target.log" 2>&1; then
    tail -n 30 "$work/build-ha-$target.log"
    fail "building $tag failed (log: $work/build-ha-$target.log)"
  fi
  note "$(grep -c ' CACHED$' "$work/build-ha-$target.log" || true) steps cached"
done
say "pybuild save | docker load: $image ${HA_POSTGRES_IMAGE} ${HA_RGW_IMAGE} ${HA_HAPROXY_IMAGE}"
for tag in "$image" "$HA_POSTGRES_IMAGE" "$HA_RGW_IMAGE" "$HA_HAPROXY_IMAGE"; do
  "$pybuild" save "$tag" | "$docker" load | sed 's/^/   /'
done

replicas=(registry-1 registry-2 registry-3)
replicas_healthy() {  # replicas_healthy SERVICE...: each service's container is healthy
  local service id
  for service in "$@"; do
    id=$("${compose[@]}" ps -q "$service")
    [ -n "$id" ] || return 1
    [ "$("$docker" inspect -f '{{.State.Health.Status}}' "$id")" = healthy ] || return 1
  done
}
balancer_up() {  # the balancer answers /v2/ (401: token auth on)
  local code
  code=$(curl -s -o /dev/null -w '%{http_code}' "http://$addr/v2/") || return 1
  [ "$code" = 200 ] || [ "$code" = 401 ]
}
say "docker-compose -p $project -f docker-compose.ha.yml up -d (http://$addr)"
"${compose[@]}" up -d
if ! wait_for 240 replicas_healthy "${replicas[@]}"; then
  "${compose[@]}" ps
  "${compose[@]}" logs --tail 30
  fail "the replicas did not become healthy"
fi
wait_for 60 balancer_up || { "${compose[@]}" logs --tail 30 balancer; fail "the balancer does not answer"; }
"${compose[@]}" ps | sed 's/^/   /'

say "adding the user admin (docker-compose exec registry-1 registry user add; kept in PostgreSQL)"
"${compose[@]}" exec -T registry-1 registry user add admin --password-stdin --replace \
  <"$password_file"
say "docker login $addr (plain HTTP on loopback; tokens from any replica verify on all)"
"$docker" login -u admin --password-stdin "$addr" <"$password_file"
build_and_push_example
say "docker pull $example && docker run --rm $example (through the balancer)"
"$docker" rmi -f "$example" >/dev/null 2>&1 || true
"$docker" pull -q "$example"
"$docker" run --rm "$example" | sed 's/^/   | /'
say "docker-compose stop registry-2: the balancer takes it out, pulls go on"
"${compose[@]}" stop registry-2
"$docker" rmi "$example" >/dev/null
"$docker" pull -q "$example"
note "docker run with two replicas: $("$docker" run --rm "$example" | sed -n 1p)"
"${compose[@]}" start registry-2
wait_for 120 replicas_healthy registry-2 || fail "registry-2 did not come back"
note "registry-2 is back"
succeeded=1
cat <<EOS

== done in $((SECONDS - started)) s. The registry runs scaled out:
   balancer    http://$addr  (HAProxy, round-robin over registry-1..3;
               docker-compose -p $project -f docker-compose.ha.yml, service "balancer")
   replicas    registry-1, registry-2, registry-3 (image $image, 2 workers each)
   blobs       S3 on Ceph RGW: service "rgw" (image $HA_RGW_IMAGE), bucket "registry";
               a memstore OSD: the objects are lost when that container stops (a demo store)
   metadata    PostgreSQL: service "postgres" (image $HA_POSTGRES_IMAGE), database
               "registry", data in the volume ${project}_postgres-data
   secrets     $ha_secrets (the database password and the S3 keys)
   users       admin, password in $password_file; docker and pybuild are logged in
   image       $example: built and pushed by pybuild, pulled and run by docker
   logs        docker-compose -p $project -f docker-compose.ha.yml logs -f
   stop        docker-compose -p $project -f docker-compose.ha.yml down   (-v also drops the database)
EOS
