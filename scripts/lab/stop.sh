#!/usr/bin/env bash
# Stop the lab services started by start.sh. Idempotent: stopped services are skipped.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
require_root
fail=0

# Jobs still running are killed with slurmd; slurmctld keeps their state for the next start.
for d in slurmd slurmctld; do
    pidfile=$SLURMD_PID; [[ $d == slurmctld ]] && pidfile=$SLURMCTLD_PID
    if pid_alive "$pidfile" "$d"; then
        if stop_pidfile "$pidfile" "$d" 30; then say "stop: $d stopped"
        else echo "lab: could not stop $d" >&2; fail=1; fi
    else
        rm -f "$pidfile"; say "stop: $d not running"
    fi
done

if pid_alive "$MUNGE_RUN/munged.pid" munged; then
    if stop_pidfile "$MUNGE_RUN/munged.pid" munged 20; then say "stop: munged stopped"
    else echo "lab: could not stop munged" >&2; fail=1; fi
else
    say "stop: munged not running"
fi

if command -v rabbitmqctl >/dev/null && timeout 30 rabbitmqctl -q await_startup --timeout 3 >/dev/null 2>&1; then
    # 'stop' returns once the Erlang node is gone (epmd stays, as with the Debian service).
    if timeout 90 rabbitmqctl -q stop >/dev/null 2>&1; then say "stop: rabbitmq stopped"
    else echo "lab: rabbitmqctl stop failed" >&2; fail=1; fi
else
    say "stop: rabbitmq not running"
fi

if command -v pg_ctlcluster >/dev/null &&
    pg_lsclusters -h | awk -v v="$LAB_PG_VERSION" -v c="$LAB_PG_CLUSTER" '$1==v && $2==c && $4 ~ /^online/ {ok=1} END {exit !ok}'; then
    if pg_ctlcluster "$LAB_PG_VERSION" "$LAB_PG_CLUSTER" stop -m fast </dev/null; then say "stop: postgresql stopped"
    else echo "lab: pg_ctlcluster stop failed" >&2; fail=1; fi
else
    say "stop: postgresql not running"
fi
exit "$fail"
