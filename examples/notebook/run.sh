#!/usr/bin/env bash
# run.sh — the research notebook end to end: starts `hearth serve` with the
# twelve agents of agents.yaml on one model, drops the sample news feeds and
# price files into the agents' inboxes, asks the parser and the assistant a
# question each, waits for the news to reach the daily digest, prints every
# agent's last run and the digest, and stops the server.
#
#   examples/notebook/run.sh [MODEL.gguf]     (default ../shared/models/stories260K.gguf)
#
# HEARTH_BIN picks the binary (default build/release/hearth), PORT the port
# (default 8089), CHAT_TEMPLATE the template for models without one (chatml).
# The store is examples/notebook/notebook.db; run it again and the new runs
# are added (the same files are not taken twice: rename or edit them).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
model=${1:-${HEARTH_SHARED:-$root/../shared}/models/stories260K.gguf}
bin=${HEARTH_BIN:-$root/build/release/hearth}
port=${PORT:-8089}
url=http://127.0.0.1:$port
[ -x "$bin" ] || { echo "run.sh: $bin is missing: run make first" >&2; exit 1; }

log=$(mktemp)
"$bin" serve -m "$model" --chat-template "${CHAT_TEMPLATE:-chatml}" --port "$port" \
    --agents "$here/agents.yaml" >"$log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -f "$log"' EXIT
for _ in $(seq 100); do
    grep -q "listening on" "$log" && break
    kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; exit 1; }
    sleep 0.1
done
agents() { "$bin" agents --url "$url" "$@"; }
last_digest() { agents runs digest --json --limit 1 | grep -o '"id": [0-9]*' | head -1; }
before=$(last_digest || true)

stamp=$(date +%s)
for f in "$here"/samples/news/*; do
    name=$(basename "$f")
    cp "$f" "$here/data/ingest/inbox/.$name"
    mv "$here/data/ingest/inbox/.$name" "$here/data/ingest/inbox/$stamp-$name"
done
for f in "$here"/samples/market/*.csv; do
    name=$(basename "$f")
    cp "$f" "$here/data/market/inbox/.$name"
    mv "$here/data/market/inbox/.$name" "$here/data/market/inbox/$stamp-$name"
done
echo "== parser"
agents run parser --wait --input "On Saturday 28 November Ana and Tom open the harbour market in Harbour Town."
echo "== assistant"
agents run assistant --wait --input "Which agents ran today, and did any fail?"

echo "== waiting for the news to reach the digest"
# Idle: every agent's newest run has ended (a queued or running run is
# always an agent's newest), and a digest has been written since the start.
for _ in $(seq 900); do
    now=$(last_digest || true)
    if [ -n "$now" ] && [ "$now" != "$before" ] &&
        ! agents list --json | grep -q '"status": "\(queued\|running\)"'; then
        break
    fi
    sleep 1
done
echo "== agents"
agents list
echo "== the digest"
agents runs digest --limit 1
