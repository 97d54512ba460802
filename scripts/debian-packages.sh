# Sourced by test.sh and bench.sh: install the Debian packages whose commands are missing.
#   need_command COMMAND PACKAGE...   queue PACKAGEs when COMMAND is not on PATH
#   install_needed                     apt-get install the queue (root only; else say what)
need_apt=()

need_command() {
  local cmd=$1; shift
  command -v "$cmd" >/dev/null || need_apt+=("$@")
}

install_needed() {
  [ ${#need_apt[@]} -gt 0 ] || return 0
  if [ "$(id -u)" != 0 ]; then
    echo "missing: ${need_apt[*]} (install them, or run as root)" >&2
    exit 1
  fi
  echo "installing ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
}

# What every tier that runs containers needs: a Docker Engine (unless DOCKER_HOST names one)
# and a static busybox to build the local test image from.
[ -n "${DOCKER_HOST:-}" ] || need_command dockerd docker.io iptables
[ -x /bin/busybox ] || need_command busybox busybox-static
