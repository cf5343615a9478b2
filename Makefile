# revision-injector: `make` builds policy.wasm, `make run` replays the bundled fixtures,
# `make test` is what CI runs. Every target installs what it needs.

# Every Istio version's golden suite (istio = the main branch, istio-<version> the releases).
CONFORMANCE_DIRS ?= $(patsubst %/cases.yaml,%,$(wildcard ../shared/conformance/*/cases.yaml))
# Everyday targets use the dev build of revinject: `cargo test` builds it anyway and the
# wasmtime/Cranelift crates are optimized in the dev profile (Cargo.toml), whereas a release
# build of wasmtime under the policy's fat LTO takes many minutes. Benchmarks use the
# `bench-host` profile: release optimizations without fat LTO, with line tables for `perf`.
REVINJECT := target/debug/revinject
BENCH_REVINJECT := target/bench-host/revinject
SOURCES := $(shell find src -name '*.rs') Cargo.toml Cargo.lock
HOST_SOURCES := $(shell find host/src -name '*.rs') host/Cargo.toml

.PHONY: all run test fmt-check gen-check clippy unit replay crosscheck e2e-policy-server conformance scenarios fuzz-smoke bench soak-policy-server clean web test-web

all: policy.wasm

policy.wasm: $(SOURCES) scripts/build-wasm.sh
	./scripts/build-wasm.sh

$(REVINJECT): $(SOURCES) $(HOST_SOURCES)
	cargo build --locked -p revinject

$(BENCH_REVINJECT): $(SOURCES) $(HOST_SOURCES)
	cargo build --profile bench-host --locked -p revinject

run: policy.wasm $(REVINJECT)
	$(REVINJECT) replay test-data/ --verbose

fmt-check:
	cargo fmt --all -- --check

# The generated Pod schema (src/schema/pod_types.rs) must be what its generator makes of
# k8s-openapi (fetched into ~/.cargo/registry by `cargo fetch`) and scripts/pod-schema-go.txt.
gen-check:
	cargo fetch --locked
	mkdir -p target
	python3 scripts/gen-pod-schema.py --out target/pod_types.rs.check
	diff -u src/schema/pod_types.rs target/pod_types.rs.check

clippy:
	cargo clippy --locked --workspace --all-targets -- -D warnings

# The host integration tests (host/tests) run the real policy.wasm.
unit: policy.wasm
	cargo test --locked --workspace

replay: policy.wasm $(REVINJECT)
	$(REVINJECT) replay test-data/

# Every fixture through Kubewarden's real `kwctl run` and through revinject: same answers.
# kwctl comes from $$KWCTL, PATH or ../shared/kubewarden/bin (skipped, saying so, without one).
crosscheck: policy.wasm $(REVINJECT)
	$(REVINJECT) crosscheck test-data/

# The fixtures through Kubewarden's real policy-server on 127.0.0.1 (one policy per settings
# file: the canary pair, the seed ...), Namespaces from `revinject fake-kube`'s server.
e2e-policy-server: policy.wasm $(REVINJECT)
	$(REVINJECT) e2e test-data/

# Each suite prints its cases and `N passed, M failed`; every suite runs even when one fails.
conformance: policy.wasm $(REVINJECT)
	@test -n "$(CONFORMANCE_DIRS)" || { echo "no conformance suites under ../shared/conformance"; exit 1; }
	@failed=""; for dir in $(CONFORMANCE_DIRS); do \
	  echo "== conformance $$dir"; \
	  $(REVINJECT) conformance $$dir || failed="$$failed $$dir"; \
	done; \
	if [ -n "$$failed" ]; then echo "conformance failed in:$$failed"; exit 1; fi

# A short seeded fuzz pass through policy.wasm (docs/reliability.md); failures land in
# target/fuzz-failures/.
fuzz-smoke: policy.wasm $(REVINJECT)
	$(REVINJECT) fuzz --iterations 300 --seed 20261126

scenarios: policy.wasm $(REVINJECT)
	$(REVINJECT) upgrade test-data/scenarios/canary-upgrade.yaml
	$(REVINJECT) upgrade test-data/scenarios/tag-move.yaml

test: fmt-check gen-check clippy unit replay crosscheck e2e-policy-server conformance scenarios fuzz-smoke test-web

# Browser playground (web/, a Cargo workspace of its own): build web/pkg, serve it on localhost.
WEB_PORT ?= 8080
web:
	./web/build.sh
	@echo "playground: http://127.0.0.1:$(WEB_PORT)/ (Ctrl-C stops the server)"
	python3 -m http.server $(WEB_PORT) --bind 127.0.0.1 --directory web/pkg

# Its unit tests, then the e2e test in headless Chromium (installs chromium and playwright-core
# the first time); rewrites docs/playground.png.
test-web:
	./web/build.sh
	cd web && cargo test
	./web/tests/run.sh

# Performance report (not part of `test`): the native criterion baseline, policy.wasm through
# `revinject bench`, then in Kubewarden's real policy-server against the floor policies, then
# guest instructions per fresh-instance request (callgrind); writes docs/benchmarks.md and
# its charts.
BENCH_ARGS ?= --threads 1 --threads 2 --duration 1 --rounds 3
SERVER_BENCH_ARGS ?= --threads 1 --threads 2 --duration 2 --rounds 3
bench: policy.wasm $(BENCH_REVINJECT)
	cargo bench --locked -p revision-injector --bench evaluate
	$(BENCH_REVINJECT) bench $(BENCH_ARGS) --plot docs/benchmarks.svg --markdown docs/benchmarks.md policy.wasm
	$(BENCH_REVINJECT) bench --policy-server $(SERVER_BENCH_ARGS) --plot docs/benchmarks-policy-server.svg --markdown docs/benchmarks.md policy.wasm
	./scripts/fresh-instructions.sh 20 docs/benchmarks.md

# A 60-second soak through the real policy-server (docs/reliability.md; not part of `test`).
soak-policy-server: policy.wasm $(BENCH_REVINJECT)
	$(BENCH_REVINJECT) soak --policy-server --duration 60 --clients 2 --markdown docs/reliability.md policy.wasm

clean:
	cargo clean
	rm -f policy.wasm
