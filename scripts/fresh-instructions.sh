#!/usr/bin/env bash
# Guest instructions per request in policy-server's model (a fresh instance per request), for
# every bench workload, written into docs/benchmarks.md (its `guest-instructions` section).
# Unlike wall clock, the count does not move with the machine's load. Each workload's
# figure is `MODE=fresh scripts/guest-profile.sh WORKLOAD ITERATIONS MODULE` (callgrind over
# the waPC call: instantiation is outside it, the namespace callback inside), on policy.wasm
# as built, and on the floor that bounds the workload in docs/benchmarks.md.
#
#   scripts/fresh-instructions.sh [ITERATIONS] [DOC.md]
set -euo pipefail
cd "$(dirname "$0")/.."
iterations=${1:-20}
doc=${2:-docs/benchmarks.md}
floors=${FLOORS_DIR:-../shared/kubewarden}
count() { # workload module -> instructions per call
  MODE=fresh scripts/guest-profile.sh "$1" "$iterations" "$2" | sed -n 's/^.*calls, \([0-9,]*\) instructions per call.*$/\1/p' | head -1
}
rows=""
for w in hello realistic env2000 skip; do
  ours=$(count "$w" policy.wasm)
  case "$w" in
    hello|realistic) floor=injection-floor; module=$floors/injection-floor/injection-floor.wasm ;;
    *) floor=floor-policy; module=$floors/floor-policy/floor.wasm ;;
  esac
  if [ -f "$module" ]; then theirs=$(count "$w" "$module"); else theirs="–"; fi
  echo "$w: policy.wasm $ours, $floor $theirs" >&2
  rows+="| $w | $ours | $floor | $theirs |"$'\n'
done
body="## Guest instructions per request (fresh instance, load-independent)

\`scripts/fresh-instructions.sh $iterations\` (part of \`make bench\`): x86 instructions wasmtime
executes inside the waPC \`validate\` call when every request gets a new instance, as in
policy-server, counted by callgrind (\`MODE=fresh scripts/guest-profile.sh WORKLOAD $iterations
MODULE\`, mean of $iterations calls; the namespace callback is inside the call, instantiation is
not). policy.wasm as built, beside the floor each workload is held against in policy-server
(the floors read the same request; \`floor-policy\` accepts it).

| workload | policy.wasm | floor | floor's instructions |
| --- | ---: | --- | ---: |
$rows"
python3 - "$doc" "guest-instructions" "$body" <<'PY'
import sys
path, name, body = sys.argv[1:4]
begin, end = f"<!-- BEGIN {name} (generated) -->", f"<!-- END {name} -->"
try:
    doc = open(path).read()
except FileNotFoundError:
    doc = ""
body = body.strip("\n")
if begin in doc and end in doc[doc.index(begin):]:
    start = doc.index(begin) + len(begin)
    stop = doc.index(end, start)
    doc = doc[:start] + "\n" + body + "\n" + doc[stop:]
else:
    doc = doc + ("" if doc.endswith("\n") or not doc else "\n") + f"\n{begin}\n{body}\n{end}\n"
open(path, "w").write(doc)
PY
echo "wrote the guest-instructions section of $doc" >&2
