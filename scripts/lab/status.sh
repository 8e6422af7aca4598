#!/usr/bin/env bash
# One line per lab service; exit 0 only if all are up.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
down=0
line() { printf '%-11s %-4s %s\n' "$1" "$2" "$3"; [[ $2 == UP ]] || down=1; }
# shellcheck disable=SC1090
[[ -f $LAB_SECRETS ]] && source "$LAB_SECRETS"

port=${LAB_PG_PORT:-5432}
if pg_isready -q -h localhost -p "$port" 2>/dev/null; then
    if [[ -n ${LAB_PG_PASSWORD:-} ]] && PGPASSWORD=$LAB_PG_PASSWORD PGCONNECT_TIMEOUT=5 psql -X -Atq -h "${LAB_PG_HOST:-localhost}" \
        -p "$port" -U "${LAB_PG_USER:-lifdiff}" -d postgres -c 'SELECT 1' >/dev/null 2>&1; then
        line postgresql UP "localhost:$port, login as ${LAB_PG_USER:-lifdiff} works"
    else
        line postgresql DOWN "accepts connections on :$port but login as ${LAB_PG_USER:-lifdiff} fails (run start.sh)"
    fi
else
    line postgresql DOWN "nothing accepts connections on localhost:$port"
fi

if timeout 20 rabbitmqctl -q status >/dev/null 2>&1; then
    line rabbitmq UP "node running, ${LAB_BROKER_HOST:-127.0.0.1}:${LAB_BROKER_PORT:-5672}"
else
    line rabbitmq DOWN "rabbitmqctl status fails"
fi

if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then line munge UP "munge -n | unmunge works"
else line munge DOWN "munge -n | unmunge fails"; fi

if pid_alive "$SLURMCTLD_PID" slurmctld && timeout 10 scontrol ping 2>/dev/null | grep -q 'is UP'; then
    line slurmctld UP "pid $(cat "$SLURMCTLD_PID")"
else
    line slurmctld DOWN "not running or not answering scontrol ping"
fi
state=$(timeout 10 sinfo -h -N -n "$LAB_SLURM_NODE" -o '%T %c %G' 2>/dev/null | head -1)
if pid_alive "$SLURMD_PID" slurmd && [[ $state =~ ^(idle|mixed|allocated|completing)\  ]]; then
    line slurmd UP "node $LAB_SLURM_NODE: $state"
else
    line slurmd DOWN "node $LAB_SLURM_NODE: ${state:-unknown}${state:+ }(slurmd pid file: $(cat "$SLURMD_PID" 2>/dev/null || echo none))"
fi
exit "$down"
