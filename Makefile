# rgate — see README.md. Every target works with `docker compose` (v2) or `docker-compose` (v1).
CARGO ?= cargo
COMPOSE := $(shell if docker compose version >/dev/null 2>&1; then echo "docker compose"; \
	elif command -v docker-compose >/dev/null 2>&1; then echo docker-compose; fi)

.PHONY: build release test lint fmt bench static demo-image image run run-docker run-local demo-down

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

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

# rgate vs the bare backend vs nginx (when installed) on 127.0.0.1, plus micro-benchmarks;
# markdown on stdout, JSON in target/bench/. Bounded: a few minutes. See benches/bench.py.
BENCH_ARGS ?=
bench:
	python3 benches/bench.py $(BENCH_ARGS)

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
