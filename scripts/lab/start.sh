#!/usr/bin/env bash
# Start and configure the lab services (PostgreSQL, RabbitMQ, munge, SLURM), then check
# that each one really works. Idempotent: services already up are only re-checked.
# Env: LAB_SLURM_CPUS (4), LAB_SLURM_GPUS (4), LAB_SLURM_MEM_MB (90% of RAM),
#      LAB_SLURM_MINJOBAGE (30), LAB_PG_VERSION (15).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
require_root

for cmd in pg_ctlcluster psql rabbitmq-server rabbitmqctl munged munge slurmctld slurmd sinfo; do
    command -v "$cmd" >/dev/null || die "$cmd not found: run scripts/lab/install.sh first"
done
[[ $LAB_SLURM_CPUS =~ ^[1-9][0-9]*$ ]] || die "LAB_SLURM_CPUS must be a positive integer"
[[ $LAB_SLURM_GPUS =~ ^[1-9][0-9]*$ ]] || die "LAB_SLURM_GPUS must be a positive integer"

mkdir -p "$LAB_STATE"/{log,run}
DAEMON_LOG="$LAB_STATE/log/start-daemons.log"
T0=$SECONDS
STATUS=()

# Detached daemons must not inherit our stdout/stderr: a caller reading them through a
# pipe (make | tee, subprocess) would otherwise wait for EOF forever.
daemon() { "$@" </dev/null >>"$DAEMON_LOG" 2>&1; }

# ---------------------------------------------------------------- secrets
gen_password() { head -c 18 /dev/urandom | base64 | tr '+/' 'xy'; }

setup_secrets() {
    local dir
    dir=$(dirname "$LAB_SECRETS")
    mkdir -p "$dir"
    chmod 700 "$dir"
    if [[ -f $LAB_SECRETS ]]; then
        # shellcheck disable=SC1090
        source "$LAB_SECRETS" || die "cannot source $LAB_SECRETS"
    fi
    LAB_PG_USER=${LAB_PG_USER:-lifdiff}
    LAB_PG_PASSWORD=${LAB_PG_PASSWORD:-$(gen_password)}
    LAB_PG_HOST=${LAB_PG_HOST:-localhost}
    LAB_PG_PORT=${LAB_PG_PORT:-5432}
    LAB_BROKER_USER=${LAB_BROKER_USER:-guest}
    LAB_BROKER_PASSWORD=${LAB_BROKER_PASSWORD:-guest}
    LAB_BROKER_HOST=${LAB_BROKER_HOST:-127.0.0.1}
    LAB_BROKER_PORT=${LAB_BROKER_PORT:-5672}
    LAB_BROKER_VHOST=${LAB_BROKER_VHOST:-/}
    [[ $LAB_PG_PASSWORD =~ ^[A-Za-z0-9]+$ ]] || die "LAB_PG_PASSWORD in $LAB_SECRETS must be alphanumeric"
    local tmp
    tmp=$(mktemp "$dir/.secrets.XXXXXX")
    cat >"$tmp" <<EOF
# Lab service credentials, written by scripts/lab/start.sh. Not for the repo.
LAB_PG_USER=$LAB_PG_USER
LAB_PG_PASSWORD=$LAB_PG_PASSWORD
LAB_PG_HOST=$LAB_PG_HOST
LAB_PG_PORT=$LAB_PG_PORT
LAB_BROKER_USER=$LAB_BROKER_USER
LAB_BROKER_PASSWORD=$LAB_BROKER_PASSWORD
LAB_BROKER_HOST=$LAB_BROKER_HOST
LAB_BROKER_PORT=$LAB_BROKER_PORT
LAB_BROKER_VHOST=$LAB_BROKER_VHOST
EOF
    chmod 600 "$tmp"
    mv -f "$tmp" "$LAB_SECRETS"
}

# ---------------------------------------------------------------- PostgreSQL
pg_field() { pg_lsclusters -h | awk -v v="$LAB_PG_VERSION" -v c="$LAB_PG_CLUSTER" -v f="$1" '$1==v && $2==c {print $f}'; }

start_postgres() {
    local port status pid datadir
    if [[ -z $(pg_field 1) ]]; then
        say "postgres: creating cluster $LAB_PG_VERSION/$LAB_PG_CLUSTER"
        pg_createcluster --locale C.UTF-8 -p "$LAB_PG_PORT" "$LAB_PG_VERSION" "$LAB_PG_CLUSTER" >>"$DAEMON_LOG" 2>&1 ||
            die "pg_createcluster $LAB_PG_VERSION $LAB_PG_CLUSTER failed (see $DAEMON_LOG)"
    fi
    port=$(pg_field 3)
    [[ $port == "$LAB_PG_PORT" ]] || die "cluster $LAB_PG_VERSION/$LAB_PG_CLUSTER listens on $port, secrets say $LAB_PG_PORT"
    status=$(pg_field 4)
    if [[ $status != online* ]]; then
        datadir=$(pg_field 6)
        # A postmaster.pid left by a dead container whose pid now belongs to another process.
        if [[ -f $datadir/postmaster.pid ]]; then
            pid=$(head -1 "$datadir/postmaster.pid")
            if [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" != postgres ]]; then
                say "postgres: removing stale $datadir/postmaster.pid"
                rm -f "$datadir/postmaster.pid"
            fi
        fi
        install -d -o postgres -g postgres -m 2775 /var/run/postgresql
        daemon pg_ctlcluster "$LAB_PG_VERSION" "$LAB_PG_CLUSTER" start ||
            die "pg_ctlcluster $LAB_PG_VERSION $LAB_PG_CLUSTER start failed (see $(pg_field 7))"
    fi
    wait_for 60 "PostgreSQL on localhost:$port" pg_isready -q -h localhost -p "$port" ||
        die "PostgreSQL does not accept connections (see $(pg_field 7))"

    # Role: create once, (re)set the password from the secrets file every time.
    runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -p "$port" -d postgres \
        -v user="$LAB_PG_USER" -v pw="$LAB_PG_PASSWORD" >/dev/null <<'SQL' || die "could not create/alter role $LAB_PG_USER"
SELECT format('CREATE ROLE %I', :'user') WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'user')\gexec
ALTER ROLE :"user" WITH LOGIN CREATEDB PASSWORD :'pw';
SQL
    local out
    out=$(PGPASSWORD=$LAB_PG_PASSWORD PGCONNECT_TIMEOUT=10 psql -X -At -h "$LAB_PG_HOST" -p "$port" \
        -U "$LAB_PG_USER" -d postgres -c 'SELECT current_user, rolcreatedb, version() FROM pg_roles WHERE rolname = current_user' 2>&1) ||
        die "TCP login as $LAB_PG_USER@$LAB_PG_HOST:$port failed: $out"
    [[ $out == "$LAB_PG_USER|t|"* ]] || die "unexpected answer from PostgreSQL: $out"
    STATUS+=("postgresql  OK  $(cut -d' ' -f1-2 <<<"${out#*|t|}") on $LAB_PG_HOST:$port, role $LAB_PG_USER (CREATEDB) logs in over TCP")
}

# ---------------------------------------------------------------- RabbitMQ
rmq_consumer_timeout() { timeout 30 rabbitmqctl -q eval 'application:get_env(rabbit, consumer_timeout).' 2>/dev/null; }

start_rabbitmq() {
    local adv=/etc/rabbitmq/advanced.config env=/etc/rabbitmq/rabbitmq-env.conf
    # AiiDA tasks can run longer than the default 30 min consumer timeout.
    if ! grep -qs 'consumer_timeout, *undefined' "$adv"; then
        [[ -f $adv ]] && cp -p "$adv" "$adv.lab-backup"
        echo '[{rabbit, [{consumer_timeout, undefined}]}].' >"$adv"
    fi
    # Node name and bind address on loopback: no dependence on the hostname resolving.
    if ! grep -q '^# lifdiff-lab' "$env" 2>/dev/null; then
        grep -Eq '^(NODENAME|NODE_IP_ADDRESS)=' "$env" 2>/dev/null &&
            die "$env already sets NODENAME/NODE_IP_ADDRESS; remove them or add the '# lifdiff-lab' marker"
        printf '# lifdiff-lab\nNODENAME=rabbit@localhost\nNODE_IP_ADDRESS=127.0.0.1\n' >>"$env"
    fi

    if timeout 30 rabbitmqctl -q await_startup --timeout 5 >/dev/null 2>&1; then
        if [[ $(rmq_consumer_timeout) != "{ok,undefined}" ]]; then
            say "rabbitmq: running without consumer_timeout=undefined, restarting it"
            timeout 60 rabbitmqctl -q stop >/dev/null 2>&1 || true
        fi
    fi
    if ! timeout 30 rabbitmqctl -q await_startup --timeout 5 >/dev/null 2>&1; then
        install -d -o rabbitmq -g rabbitmq /var/log/rabbitmq /var/lib/rabbitmq
        daemon rabbitmq-server -detached || die "rabbitmq-server -detached failed (see /var/log/rabbitmq/)"
        # Each rabbitmqctl call starts an Erlang VM (~1 s), so poll with its own timeout.
        wait_for 120 "RabbitMQ startup" timeout 30 rabbitmqctl -q await_startup --timeout 10 ||
            die "RabbitMQ did not start (see /var/log/rabbitmq/ and $DAEMON_LOG)"
    fi
    timeout 30 rabbitmqctl -q status >/dev/null 2>&1 || die "rabbitmqctl status failed"
    [[ $(rmq_consumer_timeout) == "{ok,undefined}" ]] || die "RabbitMQ consumer_timeout is not undefined"
    timeout 30 rabbitmqctl -q authenticate_user "$LAB_BROKER_USER" "$LAB_BROKER_PASSWORD" >/dev/null 2>&1 ||
        die "RabbitMQ rejects $LAB_BROKER_USER/<password from $LAB_SECRETS>"
    timeout 5 bash -c "</dev/tcp/$LAB_BROKER_HOST/$LAB_BROKER_PORT" 2>/dev/null ||
        die "nothing listens on $LAB_BROKER_HOST:$LAB_BROKER_PORT"
    local ver
    ver=$(dpkg-query -W -f='${Version}' rabbitmq-server | cut -d- -f1)
    STATUS+=("rabbitmq    OK  $ver amqp://$LAB_BROKER_USER@$LAB_BROKER_HOST:$LAB_BROKER_PORT$LAB_BROKER_VHOST, consumer_timeout undefined")
}

# ---------------------------------------------------------------- munge
munge_ok() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

start_munge() {
    local key=/etc/munge/munge.key
    install -d -o munge -g munge -m 700 /etc/munge
    install -d -o munge -g munge -m 755 "$MUNGE_RUN"
    install -d -o munge -g munge -m 700 /var/log/munge /var/lib/munge
    if [[ ! -s $key ]]; then
        say "munge: creating $key"
        runuser -u munge -- mungekey --create --keyfile="$key" || die "mungekey --create failed"
    fi
    chown munge:munge "$key"
    chmod 400 "$key"
    if ! munge_ok; then
        # Stale pid/socket from a previous container make munged refuse to start.
        munge_clear_stale
        daemon runuser -u munge -- munged || die "munged failed to start (see /var/log/munge/munged.log)"
        wait_for 20 "munged" munge_ok || die "munge -n | unmunge fails (see /var/log/munge/munged.log)"
    fi
    STATUS+=("munge       OK  munge -n | unmunge round-trips")
}

munge_clear_stale() {
    if [[ -f $MUNGE_RUN/munged.pid ]] && ! pid_alive "$MUNGE_RUN/munged.pid" munged; then
        rm -f "$MUNGE_RUN/munged.pid"
    fi
    if ! pid_alive "$MUNGE_RUN/munged.pid" munged; then
        rm -f "$MUNGE_RUN"/munge.socket.2 "$MUNGE_RUN"/munge.socket.2.lock
    fi
}

# ---------------------------------------------------------------- SLURM
write_slurm_conf() {
    local node=$LAB_SLURM_NODE mem
    mem=${LAB_SLURM_MEM_MB:-$(awk '/^MemTotal:/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)}
    local last=$((LAB_SLURM_GPUS - 1)) fake="$LAB_STATE/fakegpu"
    # Fake /dev/nvidiaN: slurmd wants character devices (plain files are rejected and
    # then no CUDA_VISIBLE_DEVICES is set); symlinks to /dev/null pass, need no mknod.
    mkdir -p "$fake"
    for ((i = 0; i < LAB_SLURM_GPUS; i++)); do ln -sfn /dev/null "$fake/nvidia$i"; done
    mkdir -p /etc/slurm "$LAB_STATE"/{slurmctld,slurmd}
    cat >"$1/slurm.conf" <<EOF
# Generated by aiida-lifdiff scripts/lab/start.sh; rewritten on every start.
ClusterName=lifdiff-lab
SlurmctldHost=$node(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$LAB_STATE/slurmctld
SlurmdSpoolDir=$LAB_STATE/slurmd
SlurmctldPidFile=$SLURMCTLD_PID
SlurmdPidFile=$SLURMD_PID
SlurmctldLogFile=$LAB_STATE/log/slurmctld.log
SlurmdLogFile=$LAB_STATE/log/slurmd.log
# Container: no cgroups.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SchedulerType=sched/builtin
SchedulerParameters=sched_interval=5
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
GresTypes=gpu
# Trust the CPU/GPU counts below even when the machine has fewer.
SlurmdParameters=config_overrides
ReturnToService=2
# Quick tests: short grace periods, finished jobs purged after MinJobAge seconds.
KillWait=2
OverTimeLimit=0
MinJobAge=${LAB_SLURM_MINJOBAGE:-30}
InactiveLimit=0
Waittime=0
SlurmdTimeout=60
NodeName=$node NodeAddr=127.0.0.1 CPUs=$LAB_SLURM_CPUS RealMemory=$mem Gres=gpu:$LAB_SLURM_GPUS State=UNKNOWN
PartitionName=gpu Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
    cat >"$1/gres.conf" <<EOF
# Generated by aiida-lifdiff scripts/lab/start.sh: fake GPUs, no hardware detection.
AutoDetect=off
NodeName=$node Name=gpu File=$fake/nvidia[0-$last]
EOF
}

node_state() { sinfo -h -N -n "$LAB_SLURM_NODE" -o '%T' 2>/dev/null | head -1; }
node_usable() { [[ $(node_state) =~ ^(idle|mixed|allocated|completing)$ ]]; }

start_slurm() {
    local tmp changed=0 f
    tmp=$(mktemp -d)
    write_slurm_conf "$tmp"
    for f in slurm.conf gres.conf; do
        if ! cmp -s "$tmp/$f" "/etc/slurm/$f"; then
            install -m 644 "$tmp/$f" "/etc/slurm/$f"
            changed=1
        fi
    done
    rm -rf "$tmp"
    # Node CPU/GPU changes need a daemon restart, not just scontrol reconfigure.
    if ((changed)); then
        stop_pidfile "$SLURMD_PID" slurmd 20
        stop_pidfile "$SLURMCTLD_PID" slurmctld 20
    fi

    if ! pid_alive "$SLURMCTLD_PID" slurmctld; then
        rm -f "$SLURMCTLD_PID"
        daemon slurmctld || die "slurmctld failed to start (see $LAB_STATE/log/slurmctld.log)"
    fi
    wait_for 30 "slurmctld" bash -c 'scontrol ping | grep -q "is UP"' ||
        die "slurmctld does not answer (see $LAB_STATE/log/slurmctld.log)"

    if ! pid_alive "$SLURMD_PID" slurmd; then
        rm -f "$SLURMD_PID"
        daemon slurmd || die "slurmd failed to start (see $LAB_STATE/log/slurmd.log)"
    fi
    pid_alive "$SLURMD_PID" slurmd || sleep 1
    pid_alive "$SLURMD_PID" slurmd || die "slurmd exited (see $LAB_STATE/log/slurmd.log)"

    # A node left DOWN/DRAINED by an earlier run is resumed once slurmd has registered.
    wait_for 30 "node $LAB_SLURM_NODE to register" bash -c "sinfo -h -N -n '$LAB_SLURM_NODE' -o %T | grep -vq '\*\$'" || true
    if ! node_usable; then
        say "slurm: node $LAB_SLURM_NODE is '$(node_state)', resuming it"
        scontrol update nodename="$LAB_SLURM_NODE" state=resume >/dev/null 2>&1 || true
    fi
    wait_for 30 "node $LAB_SLURM_NODE idle" node_usable ||
        die "node $LAB_SLURM_NODE is '$(node_state)' ($(sinfo -h -N -n "$LAB_SLURM_NODE" -o %E)); see $LAB_STATE/log/slurmd.log"

    # Real jobs: an interactive step sees a GPU, a batch job runs to completion.
    local out jobdir
    out=$(timeout 60 srun --gres=gpu:1 -t 1 -J lab-check env 2>&1) || die "srun --gres=gpu:1 failed: $out"
    local cvd
    cvd=$(grep -E '^CUDA_VISIBLE_DEVICES=' <<<"$out" || true)
    [[ -n $cvd ]] || die "srun --gres=gpu:1: no CUDA_VISIBLE_DEVICES in the job environment"
    jobdir=$(mktemp -d "$LAB_STATE/check.XXXXXX")
    # shellcheck disable=SC2016  # expanded by the job, not here
    printf '#!/bin/bash\necho "lab-ok gpus=$CUDA_VISIBLE_DEVICES"\n' >"$jobdir/job.sh"
    out=$(cd "$jobdir" && timeout 90 sbatch --wait --gres=gpu:1 --time=1 -J lab-check -o "$jobdir/out" job.sh 2>&1) ||
        die "sbatch --wait --gres=gpu:1 failed: $out"
    grep -q '^lab-ok gpus=.' "$jobdir/out" || die "batch job ran but its output is wrong: $(cat "$jobdir/out")"
    rm -rf "$jobdir"
    STATUS+=("slurm       OK  $(sinfo -h -V | cut -d' ' -f2) node $LAB_SLURM_NODE $(node_state) CPUs=$LAB_SLURM_CPUS gpu:$LAB_SLURM_GPUS partition gpu; srun $cvd; sbatch job completed")
}

setup_secrets
start_postgres
start_rabbitmq
start_munge
start_slurm
for line in "${STATUS[@]}"; do echo "$line"; done
say "all services up in $((SECONDS - T0)) s; credentials in $LAB_SECRETS"
