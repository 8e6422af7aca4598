#!/usr/bin/env bash
# Install the lab services (PostgreSQL, RabbitMQ, SLURM, munge) from Debian 12 packages.
# Idempotent: does nothing when all packages are already installed.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
require_root

# slurm-wlm is only a metapackage over these three; naming them keeps it explicit.
PACKAGES=(postgresql postgresql-client rabbitmq-server munge slurmctld slurmd slurm-client)

missing=()
for p in "${PACKAGES[@]}"; do
    [[ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" == installed ]] || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
    say "install: all packages already installed (${PACKAGES[*]})"
    exit 0
fi
command -v apt-get >/dev/null || die "apt-get not found: these scripts target Debian 12"

# Keep postinst scripts from starting daemons (no systemd here; start.sh does it).
# An existing policy-rc.d (Docker images ship one) is left untouched.
POLICY=/usr/sbin/policy-rc.d
if [[ ! -e $POLICY ]]; then
    printf '#!/bin/sh\n# lifdiff-lab: temporary, removed after install\nexit 101\n' >"$POLICY"
    chmod 755 "$POLICY"
    trap 'rm -f "$POLICY"' EXIT
fi

export DEBIAN_FRONTEND=noninteractive
say "install: installing ${missing[*]}"
start=$SECONDS
# Lists may be absent or stale on a fresh image; an update is cheap next to the install.
apt-get update -qq || die "apt-get update failed (no network to the Debian mirror?)"
apt-get install -y -qq --no-install-recommends -o Dpkg::Use-Pty=0 \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
    "${PACKAGES[@]}" || die "apt-get install failed for: ${missing[*]}"

for p in "${PACKAGES[@]}"; do
    [[ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" == installed ]] ||
        die "package $p is not installed after apt-get install"
done
say "install: done in $((SECONDS - start)) s"
