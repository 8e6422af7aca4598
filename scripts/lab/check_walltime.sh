#!/usr/bin/env bash
# Check that SLURM kills a job at its walltime and that its stderr carries slurmstepd's
# "CANCELLED AT ... DUE TO TIME LIMIT" line (AiiDA's fallback walltime detection).
# Prints how many seconds after the 1-minute limit the kill happened. Takes ~1.5 min.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
scontrol ping 2>/dev/null | grep -q 'is UP' || die "slurmctld is not up: run scripts/lab/start.sh"

dir=$(mktemp -d "$LAB_STATE/walltime.XXXXXX")
# Nothing on stderr before the kill: AiiDA matches the line with re.match (first line only).
cat >"$dir/job.sh" <<'JOB'
#!/bin/bash
date +%s >started
sleep 600 &
echo $! >sleep.pid
wait
echo "not killed" >survived
JOB
jobid=$(cd "$dir" && sbatch --parsable --time=1 --gres=gpu:1 -J lab-walltime -o "$dir/out" -e "$dir/err" job.sh) ||
    die "sbatch failed"
say "walltime: job $jobid submitted (limit 1 min), files in $dir"

start=""
for ((i = 0; i < 240; i++)); do
    info=$(scontrol -o show job "$jobid" 2>/dev/null || true)
    state=$(grep -o 'JobState=[A-Z_]*' <<<"$info" | cut -d= -f2 || true)
    [[ -z $start && $state == RUNNING ]] && start=$(grep -o 'StartTime=[^ ]*' <<<"$info" | cut -d= -f2)
    [[ -z $state || $state =~ ^(TIMEOUT|COMPLETED|FAILED|CANCELLED|NODE_FAIL)$ ]] && break
    sleep 1
done
[[ -n $state ]] || state="(gone from slurmctld)"
[[ -n $start ]] || die "job $jobid never seen RUNNING (state $state)"
[[ $state == TIMEOUT ]] || die "job $jobid ended in state $state, expected TIMEOUT (see $dir)"
[[ ! -e $dir/survived ]] || die "job script survived its walltime"

line=$(grep -m1 'CANCELLED AT .* DUE TO TIME LIMIT' "$dir/err" || true)
[[ -n $line ]] || die "no 'CANCELLED AT ... DUE TO TIME LIMIT' in $dir/err: $(cat "$dir/err")"
cancel=$(sed -E 's/.*CANCELLED AT ([0-9T:-]+) DUE TO.*/\1/' <<<"$line")
delay=$(($(date -d "$cancel" +%s) - $(date -d "$start" +%s) - 60))
first=no; head -1 "$dir/err" | grep -q 'CANCELLED AT .* DUE TO TIME LIMIT' && first=yes

sleeper=$(cat "$dir/sleep.pid" 2>/dev/null || echo "")
sleep 3
if [[ -n $sleeper ]] && kill -0 "$sleeper" 2>/dev/null; then
    die "the job's child process $sleeper survived the kill"
fi
say "walltime: job $jobid state TIMEOUT; start $start, cancelled $cancel -> killed $delay s after the 1 min limit"
say "walltime: stderr: $line (first line of stderr: $first); children killed"
rm -rf "$dir"
