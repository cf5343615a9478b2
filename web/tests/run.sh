#!/usr/bin/env bash
# `make test-web`: serve web/pkg on a free loopback port, run the e2e test in headless Chromium,
# and stop the server whatever happens. Expects web/pkg built (web/build.sh).
set -euo pipefail
cd "$(dirname "$0")"

if ! [ -x /usr/bin/chromium ]; then
  echo "installing Debian's chromium (first time only)" >&2
  apt-get update >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y chromium >&2
fi
if ! [ -d node_modules/playwright-core ]; then
  npm ci --no-audit --no-fund >&2
fi

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
log=$(mktemp)
python3 -m http.server "$port" --bind 127.0.0.1 --directory ../pkg >"$log" 2>&1 &
server=$!
stop() {
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  rm -f "$log"
}
trap stop EXIT INT TERM

python3 - "$port" <<'PY'
import sys, time, urllib.request
url = f"http://127.0.0.1:{sys.argv[1]}/index.html"
for _ in range(100):
    try:
        urllib.request.urlopen(url, timeout=1)
        sys.exit(0)
    except OSError:
        time.sleep(0.1)
sys.exit(f"the static server did not answer at {url}")
PY

BASE_URL="http://127.0.0.1:$port/" timeout 300 node --test --test-timeout=120000 playground.test.mjs
