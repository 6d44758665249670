#!/usr/bin/env bash
# Installs everything `make lab` and `make test` need on a Debian 12 host. Idempotent: each step checks
# first and skips what is already done. Run as root (podman lab nodes with systemd need rootful podman).
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf '[bootstrap] %s\n' "$*"; }
die() { printf '[bootstrap] ERROR: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (the lab runs rootful podman with systemd nodes): sudo make ..."

# 1. Debian packages -------------------------------------------------------------------------------------
APT_PKGS=(podman runc debootstrap apt-cacher-ng uidmap iptables openssh-client curl ca-certificates unzip make)
missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
PY=${PYTHON:-python3}
command -v "$PY" >/dev/null || missing+=(python3)
if ! "$PY" -c 'import venv, ensurepip' 2>/dev/null; then missing+=(python3-venv); fi
if [ ${#missing[@]} -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  say "Debian packages present"
fi
# apt-cacher-ng's own service is not used (each lab runs its own instance); stop it where systemd started it.
if [ -d /run/systemd/system ] && systemctl is-enabled -q apt-cacher-ng 2>/dev/null; then
  systemctl disable --now apt-cacher-ng >/dev/null 2>&1 || true
fi

# 2. podman configuration (runc, cgroupfs, file events: what works on hosts without systemd as PID 1) ---
CONF=/etc/containers/containers.conf
MARK="# managed by baremetal-ai scripts/bootstrap.sh"
if [ ! -e "$CONF" ] || grep -qF "$MARK" "$CONF"; then
  # Container ulimits: 1024 (what works in the sandboxed hosts we run on: higher values made runc fail with
  # "error setting rlimits ... operation not permitted"), lower where the host's hard limit is lower.
  nofile=$(ulimit -Hn); [ "$nofile" = unlimited ] || [ "$nofile" -gt 1024 ] && nofile=1024
  nproc=$(ulimit -Hu); [ "$nproc" = unlimited ] || [ "$nproc" -gt 1024 ] && nproc=1024
  want=$(printf '%s\n[containers]\ndefault_ulimits = ["nofile=%s:%s","nproc=%s:%s"]\n\n[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n' "$MARK" "$nofile" "$nofile" "$nproc" "$nproc")
  if [ "$(cat "$CONF" 2>/dev/null)" != "$want" ]; then
    mkdir -p /etc/containers; printf '%s\n' "$want" > "$CONF"; say "wrote $CONF"
  fi
else
  say "$CONF exists and is not ours: leaving it alone"
fi
podman info >/dev/null 2>&1 || die "podman does not work here: run 'podman info' to see why"

# 3. Python virtual environment ----------------------------------------------------------------------------
stamp=.venv/.baremetal-stamp
want_stamp=$(cat pyproject.toml requirements/constraints.txt | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want_stamp" ]; then
  say "creating .venv (pinned by requirements/constraints.txt)"
  [ -x .venv/bin/python ] || "$PY" -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check --upgrade pip
  .venv/bin/pip install -q --disable-pip-version-check -c requirements/constraints.txt -e '.[test]'
  echo "$want_stamp" > "$stamp"
else
  say ".venv up to date"
fi

# 4. Ansible collections without Galaxy: unpacked from the pinned `ansible` community wheel ---------------
ANSIBLE_WHEEL_VERSION=${ANSIBLE_WHEEL_VERSION:-12.3.0}
COLLECTIONS=(containers/podman ansible/posix community/general)
cmark=collections/.ansible-$ANSIBLE_WHEEL_VERSION
if [ ! -e "$cmark" ]; then
  say "unpacking collections ${COLLECTIONS[*]} from ansible==$ANSIBLE_WHEEL_VERSION"
  mkdir -p .cache/wheels
  ls .cache/wheels/ansible-"$ANSIBLE_WHEEL_VERSION"-*.whl >/dev/null 2>&1 || \
    .venv/bin/pip download -q --disable-pip-version-check --no-deps -d .cache/wheels "ansible==$ANSIBLE_WHEEL_VERSION"
  rm -rf collections; mkdir -p collections
  pats=(); for c in "${COLLECTIONS[@]}"; do pats+=("ansible_collections/$c/*"); done
  unzip -q .cache/wheels/ansible-"$ANSIBLE_WHEEL_VERSION"-*.whl "${pats[@]}" -d collections
  touch "$cmark"
else
  say "collections present (ansible==$ANSIBLE_WHEEL_VERSION)"
fi

# 5. Lab node image (rebuilt only when its recipe's content hash changes) -----------------------------------
.venv/bin/baremetal lab image
say "done"
