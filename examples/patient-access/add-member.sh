#!/usr/bin/env bash
# Adds a member: writes members/<id>.yaml from member-template.yaml (only `name:` differs) and runs
# `oneup-bulk authorize --paste` on it, with the member at hand. Then, unattended (cron):
#   oneup-bulk run --parallel 8 members/*.yaml
# A member whose connection ends (revoked, expired) makes `run` exit 3 naming the command to
# run again: ./add-member.sh <id> (the job file is kept; only the connection is renewed).
set -euo pipefail
cd "$(dirname "$0")"
id="${1:?usage: add-member.sh MEMBER-ID   (lowercase letters, digits, - and _)}"
[[ "$id" =~ ^[a-z0-9_-]+$ ]] || { echo "member id: lowercase letters, digits, - and _ only" >&2; exit 2; }
mkdir -p members
job="members/$id.yaml"
[ -e "$job" ] || sed "s/^name: member-template /name: member-$id /" member-template.yaml > "$job"
exec oneup-bulk authorize --paste "$job"
