#!/usr/bin/env bash
# Installs what pybuild and its tests need on a Debian machine (as root), into ./.venv.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  python3 python3-venv python3-pip ca-certificates curl
  docker.io docker-compose skopeo umoci podman buildah docker-registry
  busybox-static debootstrap zstd attr libcap2-bin iproute2 util-linux wrk hey
  # libseccomp's own Python binding: the RUN sandbox's seccomp filter (builder/executor/seccomp.py)
  python3-seccomp
  # builds the escape corpus of tests/builder/test_sandbox_hardening.py (static binary)
  gcc libc6-dev
  # newuidmap/newgidmap: the id maps of a rootless build's user namespace (builder/rootless.py)
  uidmap
  # RUN steps of foreign platforms under emulation, through binfmt_misc (builder/platforms_qemu.py)
  qemu-user-static
  # ssh-agent/ssh-add for --ssh ID=KEY and the RUN --mount=type=ssh tests (builder/sshforward.py)
  openssh-client
  # the user-mode network stack of RUN steps on the default network (builder/executor/network.py)
  slirp4netns
  # throwaway engines of a scaled-out registry (registry/testing/engines.py)
  postgresql ceph-mon ceph-mgr ceph-osd radosgw ceph-common
  # the bucket copy of docs/registry.md's backup and restore
  awscli
  # the headless browser of the web UI tests (tests/registry/ui), driven by Selenium
  chromium chromium-driver
  # the load balancer in front of replicas (registry/testing/balancer.py)
  haproxy
)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "== apt-get install ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Rootless builds reach the default network through slirp4netns, which opens the TUN device
# as the building user: give it udev's mode (0666) where no udev set it up.
if [ -c /dev/net/tun ] && [ "$(stat -c %a /dev/net/tun)" != 666 ]; then
  chmod 0666 /dev/net/tun
fi

if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv"
  python3 -m venv .venv
fi
echo "== pip install -e .[test]"
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e ".[test]"
# python3-seccomp is a compiled module of Debian's Python; the venv sees that one module (not
# the rest of Debian's dist-packages) when its Python has the same ABI.
suffix=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
purelib=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
if [ -e "/usr/lib/python3/dist-packages/seccomp$suffix" ]; then
  ln -sf "/usr/lib/python3/dist-packages/seccomp$suffix" "$purelib/"
fi
.venv/bin/python -c 'import seccomp' || {
  echo "install.sh: the venv's Python cannot import python3-seccomp (seccomp$suffix);" \
       "make .venv with Debian's python3" >&2
  exit 1
}
# An editable install compiles nothing; byte-compile the packages now, as a regular install
# does, so that the first command does not pay for it.
.venv/bin/python -m compileall -q -j 0 builder registry layerstore >/dev/null
