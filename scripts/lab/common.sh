# Shared settings for the lab scripts; sourced, not run.
# shellcheck shell=bash disable=SC2034  # variables used by the scripts that source this

LAB_REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
LAB_SECRETS="${LAB_SECRETS:-$LAB_REPO_ROOT/.lab/secrets.env}"
LAB_STATE="${LAB_STATE:-/var/lib/lifdiff-lab}"

LAB_PG_VERSION="${LAB_PG_VERSION:-15}"
LAB_PG_CLUSTER="${LAB_PG_CLUSTER:-main}"

LAB_SLURM_CPUS="${LAB_SLURM_CPUS:-4}"
LAB_SLURM_GPUS="${LAB_SLURM_GPUS:-4}"
LAB_SLURM_NODE="$(hostname -s)"
SLURMCTLD_PID="$LAB_STATE/run/slurmctld.pid"
SLURMD_PID="$LAB_STATE/run/slurmd.pid"
MUNGE_RUN=/run/munge

# No systemd here: everything is started by hand, and the Debian tools live in sbin.
export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin${PATH:+:$PATH}"

die() { echo "lab: ERROR: $*" >&2; exit 1; }
say() { echo "lab: $*"; }

require_root() { [[ $(id -u) -eq 0 ]] || die "must run as root (daemons, /etc and apt)"; }

# wait_for SECONDS DESCRIPTION CMD...: poll CMD every 0.5 s until it succeeds.
wait_for() {
    local limit=$1 what=$2; shift 2
    local end=$((SECONDS + limit))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < end)) || { echo "lab: timed out after ${limit}s waiting for $what" >&2; return 1; }
        sleep 0.5
    done
}

# pid_alive PIDFILE NAME: the pid in PIDFILE is a running process called NAME.
pid_alive() {
    local pid
    [[ -s $1 ]] || return 1
    pid=$(cat "$1" 2>/dev/null) || return 1
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$2" ]]
}

# stop_pidfile PIDFILE NAME TIMEOUT: SIGTERM, wait, then SIGKILL.
stop_pidfile() {
    local pidfile=$1 name=$2 limit=${3:-20} pid
    if pid_alive "$pidfile" "$name"; then
        pid=$(cat "$pidfile")
        kill -TERM "$pid" 2>/dev/null || true
        if ! wait_for "$limit" "$name to exit" bash -c "! kill -0 $pid"; then
            echo "lab: $name (pid $pid) ignored SIGTERM, sending SIGKILL" >&2
            kill -KILL "$pid" 2>/dev/null || true
            wait_for 5 "$name to die" bash -c "! kill -0 $pid" || return 1
        fi
    fi
    rm -f "$pidfile"
}
