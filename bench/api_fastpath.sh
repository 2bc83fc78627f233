#!/bin/bash
# The fast path of /v1/search alone (api/fastpath.py): the same server with it and without it
# (a copy of src/ whose app does not add it), alternating, one fixed body by vector, wrk -t1 -c1.
# Needs the workspace bench/api.py caches (run `bench/api.py --skip-embed` once first).
#
#     bash bench/api_fastpath.sh [rounds]      # prints req/s of each side, each round
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WS=${WS:-/tmp/embedlake-bench-api/search-v2-n100000}
ROUNDS=${1:-3}
PORT=8931
export EMBEDLAKE_INDEX__EF_SEARCH=${EF:-128}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
PY="$ROOT/.venv/bin/python"

cp -r "$ROOT/src" "$TMP/without"
"$PY" - "$TMP/without/embedlake/api/app.py" <<'PY'
import sys
path = sys.argv[1]
text = open(path).read()
switch = 'if role in ("all", "search"):  # outermost'
assert switch in text, "api/app.py no longer adds the fast path this way: update this script"
open(path, "w").write(text.replace(switch, "if False:  # outermost"))
PY

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
PY

run() {  # $1: the src folder the server imports
  PYTHONPATH="$1" "$ROOT/.venv/bin/embedlake" serve "$WS" --host 127.0.0.1 --port $PORT \
    > "$TMP/serve.log" 2>&1 &
  local pid=$!
  for _ in $(seq 120); do curl -s -o /dev/null "http://127.0.0.1:$PORT/healthz" && break; sleep 0.5; done
  wrk -t1 -c1 -d3s -s "$TMP/post.lua" "http://127.0.0.1:$PORT/v1/search" > /dev/null  # warm-up
  wrk -t1 -c1 -d8s -s "$TMP/post.lua" "http://127.0.0.1:$PORT/v1/search" | awk '/Requests\/sec/ {print $2}'
  kill $pid; wait $pid 2>/dev/null || true
}

for r in $(seq "$ROUNDS"); do
  without=$(run "$TMP/without")
  with=$(run "$ROOT/src")
  echo "round $r: without the fast path $without req/s, with it $with req/s"
done
