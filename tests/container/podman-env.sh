# Sourced by build-and-run.sh and kube-play.sh: podman without a Docker
# engine and without touching /etc (see build-and-run.sh's header).
#   - podman + runc + debootstrap (+ catatonit for pods) from Debian,
#     installed here if missing;
#   - podman's config lives in $cache (PYEXEC_PODMAN_CACHE, default
#     /var/cache/pyexec-podman) and is passed with CONTAINERS_CONF,
#     CONTAINERS_STORAGE_CONF and CONTAINERS_REGISTRIES_CONF: runtime runc
#     (crun fails on a hybrid cgroup v1 layout), cgroup_manager cgroupfs,
#     capped default_ulimits.
# Needs: $cache, and log / fail_early functions.

need=()
command -v podman >/dev/null || need+=(podman)
command -v runc >/dev/null || need+=(runc)
command -v debootstrap >/dev/null || need+=(debootstrap)
# The pod's infra (pause) container of `podman kube play` is built locally
# from catatonit: there is no registry to pull k8s.gcr.io/pause from.
command -v catatonit >/dev/null || [ -x /usr/libexec/podman/catatonit ] || need+=(catatonit)
if [ ${#need[@]} -gt 0 ]; then
  log "apt-get install ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" uidmap >/dev/null \
    || fail_early "cannot install ${need[*]}"
fi

umask 022
# Run state (locks, container state) per storage dir, so two caches never mix.
runroot=/run/pyexec-podman/$(printf %s "$cache" | md5sum | cut -c1-12)
mkdir -p "$cache/conf" "$cache/storage" "$runroot"
# podman's default ulimits (1048576 open files) are above this machine's hard
# limits, which runc then fails to set: cap them at what the host allows.
cap() { local h; h=$(ulimit -H "$1"); [ "$h" = unlimited ] && h=$2; [ "$h" -gt "$2" ] && h=$2; echo "$h"; }
nofile=$(cap -n 65536)
nproc=$(cap -u 32768)  # above ~pid_max runc is refused here
cat >"$cache/conf/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
log_driver = "k8s-file"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "$runroot/libpod"
EOF
cat >"$cache/conf/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$cache/storage"
runroot = "$runroot"
EOF
cat >"$cache/conf/registries.conf" <<'EOF'
unqualified-search-registries = ["docker.io"]
short-name-mode = "permissive"
EOF
export CONTAINERS_CONF="$cache/conf/containers.conf"
export CONTAINERS_STORAGE_CONF="$cache/conf/storage.conf"
export CONTAINERS_REGISTRIES_CONF="$cache/conf/registries.conf"
