# rgate — see README.md. Every target works with `docker compose` (v2) or `docker-compose` (v1).
CARGO ?= cargo
COMPOSE := $(shell if docker compose version >/dev/null 2>&1; then echo "docker compose"; \
	elif command -v docker-compose >/dev/null 2>&1; then echo docker-compose; fi)

.PHONY: mutants build release test lint fmt bench static demo-image image run run-docker run-local \
	demo-down fuzz fuzz-smoke fuzz-replay fuzz-merge

build:
	$(CARGO) build

release:
	$(CARGO) build --release

# All tests: unit tests beside the code, integration tests in tests/ (real binary, real sockets).
# The static binaries are built first: the Docker tests put them in FROM scratch images.
# scripts/test.sh runs the Docker and PID-namespace tests only where they can run (always in
# CI) and ends with a summary of what ran and what was skipped, and why.
test: static
	$(CARGO) build --release --bins
	CARGO="$(CARGO)" scripts/test.sh

# Mutation check of the codec and the router (cargo install cargo-mutants --locked): each
# mutant is rebuilt and run against the lib's unit tests and the fast wire tests. Long (485
# mutants at the time of writing; hours on 2 CPUs), not part of `make test`. Results in
# mutants.out/. MUTANTS_ARGS adds options, e.g. `--shard 1/8` or `--file src/router.rs`.
MUTANTS_ARGS ?=
mutants:
	$(CARGO) mutants -j 1 --timeout 120 --file src/router.rs --file 'src/http/*.rs' $(MUTANTS_ARGS) -- \
	  --lib --test proxy_http --test proxy_routing --test smuggling

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) fmt --manifest-path fuzz/Cargo.toml -- --check
	$(CARGO) clippy --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

# rgate vs the bare backend, nginx and HAProxy (when installed), Pingora (benches/pingora, its
# own Cargo project, built here into target/pingora; needs cmake) and the floors (byte relays
# on epoll and on io_uring), on 127.0.0.1, plus micro-benchmarks and a run with every proxy
# held to 50 % of a CPU by a cgroup; markdown on stdout, JSON in target/bench/. Installs
# nothing: what is missing is named in the report. Bounded: about 12 minutes of measuring
# after the builds (Pingora's first build adds 5-8). See benches/bench.py.
# BENCH_ARGS="--cores N": the scaling run instead (N + 1 CPUs or more; else it says so).
BENCH_ARGS ?=
bench:
	python3 benches/bench.py $(BENCH_ARGS)

# ----- Fuzzing: fuzz/ is its own crate and workspace (see fuzz/src/lib.rs) -----
# Differential fuzz targets `request` and `response`: rgate's codec in memory, its output
# re-read by a strict parser. cargo-fuzz (`cargo install cargo-fuzz --locked`) on STABLE
# Rust: `--sanitizer none` drops `-Zsanitizer=address`, the only nightly flag cargo-fuzz
# passes; its coverage flags (-Cpasses=sancov-module, -Cllvm-args=-sanitizer-coverage-*)
# and -Cdebug-assertions are stable, so no nightly and no RUSTC_BOOTSTRAP. (ASan would need
# both; the codec is safe Rust.) The fuzz crate builds into its own target dir.
# `make fuzz` runs each target FUZZ_SECONDS; new inputs go to fuzz/target/corpus/ (not the
# repo); `make fuzz-merge` adds those that cover new code to fuzz/corpus/. Crashes land in
# fuzz/artifacts/<target>/: from the top, `cargo fuzz run -s none <target> <file>` replays one;
# `cd fuzz && cargo run -q --example explain -- <target> artifacts/<target>/*` says how each differs.
FUZZ_SECONDS ?= 600
FUZZ_SMOKE_SECONDS ?= 25
FUZZ_TARGETS := request response
FUZZ_TARGET_DIR ?= $(CURDIR)/fuzz/target
FUZZ_FLAGS ?=
FUZZ_RUN = CARGO_TARGET_DIR=$(FUZZ_TARGET_DIR) $(CARGO) fuzz run --sanitizer none \
	--target-dir $(FUZZ_TARGET_DIR)
LIBFUZZER_FLAGS = -dict=$(CURDIR)/fuzz/http.dict -timeout=10 -rss_limit_mb=2048 $(FUZZ_FLAGS)

fuzz:
	for t in $(FUZZ_TARGETS); do mkdir -p $(FUZZ_TARGET_DIR)/corpus/$$t && \
	  $(FUZZ_RUN) $$t $(FUZZ_TARGET_DIR)/corpus/$$t fuzz/corpus/$$t -- \
	    -max_total_time=$(FUZZ_SECONDS) $(LIBFUZZER_FLAGS) || exit 1; done

# Bounded (2 x 25 s plus the build) for `make test` and CI; the repo corpus is only read.
fuzz-smoke:
	for t in $(FUZZ_TARGETS); do mkdir -p $(FUZZ_TARGET_DIR)/corpus/$$t && \
	  $(FUZZ_RUN) $$t $(FUZZ_TARGET_DIR)/corpus/$$t fuzz/corpus/$$t -- \
	    -max_total_time=$(FUZZ_SMOKE_SECONDS) $(LIBFUZZER_FLAGS) || exit 1; done

# Stable `cargo test`, no fuzzer: every corpus file through the same checks, and the oracle's
# own tests (it must refuse what it is meant to catch).
fuzz-replay:
	cd fuzz && CARGO_TARGET_DIR=$(FUZZ_TARGET_DIR) $(CARGO) test

# Adds to fuzz/corpus/ only the inputs from fuzz/target/corpus/ that reach new edges
# (-use_counters=0: edges, not hit counts, or the corpus grows by hundreds of files a run).
fuzz-merge:
	for t in $(FUZZ_TARGETS); do mkdir -p $(FUZZ_TARGET_DIR)/corpus/$$t && \
	  $(FUZZ_RUN) $$t fuzz/corpus/$$t $(FUZZ_TARGET_DIR)/corpus/$$t -- -merge=1 -use_counters=0 || exit 1; done

# ----- Docker: the demo backends, the rgate image, the demo -----
# Static binaries for the FROM scratch images (tests/support_docker builds them the same way).
DOCKER_TARGET := x86_64-unknown-linux-gnu
STATIC_DIR := target/$(DOCKER_TARGET)/release
STATIC_ENV := RUSTFLAGS='-C target-feature=+crt-static' CARGO_PROFILE_RELEASE_DEBUG=0 \
	CARGO_PROFILE_RELEASE_STRIP=symbols

static:
	$(STATIC_ENV) $(CARGO) build --release --target $(DOCKER_TARGET) --bin rgate --bin demo-backend

demo-image: static
	rm -rf target/docker/demo && mkdir -p target/docker/demo
	cp $(STATIC_DIR)/demo-backend target/docker/demo/
	docker build -q -t rgate-demo-backend:latest -f docker/demo-backend.Dockerfile target/docker/demo

image: static
	rm -rf target/docker/rgate && mkdir -p target/docker/rgate
	cp $(STATIC_DIR)/rgate config.yml target/docker/rgate/
	docker build -q -t rgate:latest -f docker/rgate.Dockerfile target/docker/rgate
	@docker image inspect -f 'rgate:latest: {{.Size}} bytes' rgate:latest

# The demo: payment and orders in Docker, rgate on the host on port 8080 (Ctrl-C stops it;
# `make demo-down` removes the containers). Without a Docker daemon that answers, the same
# demo with the backends as local processes on the fixed addresses of config.local.yml.
DOCKER_PROBE := timeout 20 docker info >/dev/null 2>&1
run:
	@if $(DOCKER_PROBE); then $(MAKE) --no-print-directory run-docker; else \
	  echo "make run: Docker does not answer; running the demo backends as local processes instead (config.local.yml)"; \
	  $(MAKE) --no-print-directory run-local; fi

run-docker: demo-image
	@test -n "$(COMPOSE)" || { echo "make run needs 'docker compose' or 'docker-compose'"; exit 1; }
	$(COMPOSE) up -d payment orders
	$(STATIC_DIR)/rgate --port 8080 --config config.yml

run-local: static
	scripts/demo-local.sh $(STATIC_DIR)

demo-down:
	@test -n "$(COMPOSE)" || { echo "needs 'docker compose' or 'docker-compose'"; exit 1; }
	$(COMPOSE) --profile gateway down
