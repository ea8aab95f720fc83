#!/usr/bin/env bash
# Runs the end-to-end Sync benchmark (benches/sync.rs) against the dev mail stack (started when
# needed). Knobs are environment variables, see benches/README.md, e.g.
#   EAS_BENCH_SIZES=1000 scripts/bench-sync.sh      # skip the 20,000-mail case
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
deploy/dev/mailstack.sh start >/dev/null
eval "$(deploy/dev/mailstack.sh env)"
exec cargo bench --bench sync
