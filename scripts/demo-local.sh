#!/usr/bin/env bash
# `make run` without Docker: one demo backend per address in config.local.yml, as a local
# process on 127.0.0.1, then rgate on port 8080 in front of them, in the foreground as with
# Docker. Ctrl-C stops rgate (it drains), and the backends go with it.
#
#   scripts/demo-local.sh DIR     # DIR holds the rgate and demo-backend binaries
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:?usage: scripts/demo-local.sh DIR-with-rgate-and-demo-backend}
config=config.local.yml
# How long a backend may take to answer its health check after it starts.
ready_tries=50

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

# "- name: NAME" then "addresses: [\"IP:PORT\", …]": one backend process per address.
backends=$(awk '
  /^ *- name:/      { name = $3 }
  /^ *addresses:/   { gsub(/[]["\[,]/, " "); for (i = 2; i <= NF; i++) print name, $i }
' "$config")
[ -n "$backends" ] || { echo "demo-local: no addresses in $config"; exit 1; }

while read -r name addr; do
  ip=${addr%:*}
  port=${addr##*:}
  SERVICE_NAME=$name BIND=$ip PORT=$port DEMO_DRAIN_MS=0 "$bin/demo-backend" &
  pids+=($!)
  for ((try = 1; ; try++)); do
    PORT=$port "$bin/demo-backend" --check && break
    if ! kill -0 "${pids[-1]}" 2>/dev/null || [ "$try" -ge "$ready_tries" ]; then
      echo "demo-local: the $name backend did not start on $addr (is the port taken?)"
      exit 1
    fi
    sleep 0.1
  done
done <<< "$backends"

"$bin/rgate" --port 8080 --config "$config"
