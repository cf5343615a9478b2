#!/usr/bin/env bash
# Instructions per guest call, and where they go, for one bench workload: callgrind counts
# the x86 instructions wasmtime runs inside the waPC call (JIT code included) and the perf
# map wasmtime writes names the guest's functions. Unlike wall clock, the count does not
# move with the machine's load, so two modules can be compared on a shared machine.
#
#   scripts/guest-profile.sh WORKLOAD [ITERATIONS] [MODULE.wasm]
#   MODE=fresh scripts/guest-profile.sh WORKLOAD ...   # a new instance per request
#
# Without MODULE, builds an unstripped policy (the same code as policy.wasm, before
# wasm-opt) so the functions carry their Rust names. Needs valgrind and python3.
set -euo pipefail
cd "$(dirname "$0")/.."
workload=${1:?usage: scripts/guest-profile.sh WORKLOAD [ITERATIONS] [MODULE.wasm]}
iterations=${2:-20}
module=${3:-}
mode=${MODE:-warm}
case "$mode" in warm|fresh) ;; *) echo "MODE must be warm or fresh, not '$mode'" >&2; exit 2;; esac
if [ -z "$module" ]; then
  CARGO_PROFILE_RELEASE_STRIP=false cargo build --release --locked --target wasm32-wasip1 \
    -p revision-injector --target-dir target/guest-profile >&2
  module=target/guest-profile/wasm32-wasip1/release/revision_injector.wasm
fi
cargo build --profile bench-host --locked -p revinject >&2
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# wasmtime writes /tmp/perf-PID.map; run in a subshell to learn the PID.
(
  echo $BASHPID > "$out/pid"
  exec env REVINJECT_PERFMAP=1 valgrind --tool=callgrind --callgrind-out-file="$out/callgrind" \
    --toggle-collect='wapc::wapchost::host::WapcHost::call*' \
    target/bench-host/revinject bench --workload "$workload" --mode "$mode" \
    --iterations "$iterations" --output json "$module"
) > /dev/null 2> "$out/stderr" || { cat "$out/stderr" >&2; exit 1; }
callgrind_annotate --threshold=100 --auto=no "$out/callgrind" > "$out/flat"
python3 - "$out/callgrind" "$out/flat" "/tmp/perf-$(cat "$out/pid").map" <<'PY'
import bisect, re, sys
raw, flat, perfmap = sys.argv[1:4]
text = open(raw).read()
# Calls into WapcHost::call. callgrind compresses names: the first mention, as a caller
# (`fn=`) or a callee (`cfn=`), is `(id) name`, later ones only `(id)`.
ids = set(re.findall(r'c?fn=\((\d+)\) wapc::wapchost::host::WapcHost::call\n', text))
calls = sum(int(m.group(2)) for m in re.finditer(r'cfn=\((\d+)\)[^\n]*\ncalls=(\d+)', text)
            if m.group(1) in ids)
funcs = []
try:
    for line in open(perfmap):
        addr, size, name = line.split(' ', 2)
        funcs.append((int(addr, 16), int(size, 16), name.strip()))
except FileNotFoundError:
    pass
funcs.sort()
starts = [f[0] for f in funcs]
def name_of(where):
    jit = re.search(r'\?\?\?:0x([0-9a-f]+)', where)
    if jit:
        addr = int(jit.group(1), 16)
        i = bisect.bisect_right(starts, addr) - 1
        if i >= 0 and addr < funcs[i][0] + funcs[i][1]:
            return funcs[i][2]
        return '(wasm code without a name)'
    return where.split(' [')[0].split(':', 1)[-1]
costs, total, table = {}, 0, False
for line in open(flat):
    if 'file:function' in line:
        table = True
        continue
    m = re.match(r'\s*([\d,]+) \([^)]*\)\s+(.*)', line) if table else None
    if not m:
        continue
    n = int(m.group(1).replace(',', ''))
    total += n
    name = re.sub(r'::h[0-9a-f]{16}$|\[[0-9a-f]{16}\]', '', name_of(m.group(2)))
    costs[name] = costs.get(name, 0) + n
print(f'{calls} guest calls, {total // max(calls, 1):,} instructions per call')
for name, n in sorted(costs.items(), key=lambda kv: -kv[1])[:30]:
    print(f'{100 * n / max(total, 1):5.1f} %  {name[:150]}')
PY
rm -f "/tmp/perf-$(cat "$out/pid").map"
