#!/bin/bash
# The fast path of /v1/search alone (api/fastpath.py): the same server with it and without it
# (a copy of src/ whose app does not add it), alternating, one fixed body by vector, wrk -t1 -c1.
# With AGAINST=<git revision>, the other side is that revision's src/ instead (a serving change
# measured against the commit before it, in the same run). EF sets ef_search (default 128; "" for
# the index's tuned effort). Needs the workspace bench/api.py caches (`bench/api.py --skip-embed`).
#
#     bash bench/api_fastpath.sh [rounds]                   # with and without the fast path
#     AGAINST=HEAD~1 EF= bash bench/api_fastpath.sh [rounds]  # this checkout against HEAD~1, tuned
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WS=${WS:-/tmp/embedlake-bench-api/search-v2-n100000}
ROUNDS=${1:-3}
PORT=8931
EF=${EF-128}
if [ -n "$EF" ]; then export EMBEDLAKE_INDEX__EF_SEARCH=$EF; fi
TMP=$(mktemp -d)
PY="$ROOT/.venv/bin/python"

if [ -n "${AGAINST:-}" ]; then
  git -C "$ROOT" worktree add -q --detach "$TMP/tree" "$AGAINST"
  trap 'git -C "$ROOT" worktree remove --force "$TMP/tree"; rm -rf "$TMP"' EXIT
  ln -s "$TMP/tree/src" "$TMP/without"
  SIDES=("$AGAINST" "this checkout")
else
  trap 'rm -rf "$TMP"' EXIT
  cp -r "$ROOT/src" "$TMP/without"
  "$PY" - "$TMP/without/embedlake/api/app.py" <<'PY'
import sys
path = sys.argv[1]
text = open(path).read()
switch = 'if role in ("all", "search"):  # outermost'
assert switch in text, "api/app.py no longer adds the fast path this way: update this script"
open(path, "w").write(text.replace(switch, "if False:  # outermost"))
PY
  SIDES=("without the fast path" "with it")
fi

"$PY" - "$WS" "$TMP" <<'PY'
import json, sys
from pathlib import Path
import numpy as np
from embedlake import Workspace
from embedlake.search.searcher import Searcher
ws_path, tmp = Path(sys.argv[1]), Path(sys.argv[2])
with Workspace.open(ws_path) as ws:
    key = ws.catalog.keys.create(["search"], "bench-fastpath")[0]
    model = Searcher(ws).model.ref
vector = np.random.default_rng(0).standard_normal(384)
vector /= np.linalg.norm(vector)
body = {"vector": [round(float(x), 7) for x in vector], "model": model, "k": 10}
(tmp / "body.json").write_text(json.dumps(body))
(tmp / "post.lua").write_text(
    'wrk.method = "POST"\n'
    f'local f = io.open("{tmp}/body.json"); wrk.body = f:read("*a"); f:close()\n'
    'wrk.headers["Content-Type"] = "application/json"\n'
    f'wrk.headers["Authorization"] = "Bearer {key}"\n'
)
(tmp / "curl.cfg").write_text(
    f'header = "Content-Type: application/json"\nheader = "Authorization: Bearer {key}"\n'
    f'data = "@{tmp}/body.json"\n'
)
PY

run() {  # $1: the src folder the server imports
  PYTHONPATH="$1" "$ROOT/.venv/bin/embedlake" serve "$WS" --host 127.0.0.1 --port $PORT \
    > "$TMP/serve.log" 2>&1 &
  local pid=$!
  for _ in $(seq 120); do curl -s -o /dev/null "http://127.0.0.1:$PORT/healthz" && break; sleep 0.5; done
  # the first search loads the release (seconds): waited for, then a warm-up
  curl -s -o /dev/null --max-time 300 -K "$TMP/curl.cfg" "http://127.0.0.1:$PORT/v1/search"
  wrk -t1 -c1 -d3s -s "$TMP/post.lua" "http://127.0.0.1:$PORT/v1/search" > /dev/null
  wrk -t1 -c1 -d8s -s "$TMP/post.lua" "http://127.0.0.1:$PORT/v1/search" | awk '/Requests\/sec/ {print $2}'
  kill $pid; wait $pid 2>/dev/null || true
}

for r in $(seq "$ROUNDS"); do
  without=$(run "$TMP/without")
  with=$(run "$ROOT/src")
  echo "round $r: ${SIDES[0]} $without req/s, ${SIDES[1]} $with req/s"
done
