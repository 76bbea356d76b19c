# rgate — see README.md. Every target works with `docker compose` (v2) or `docker-compose` (v1).
CARGO ?= cargo
COMPOSE := $(shell if docker compose version >/dev/null 2>&1; then echo "docker compose"; \
	elif command -v docker-compose >/dev/null 2>&1; then echo docker-compose; fi)

.PHONY: build release test lint fmt

build:
	$(CARGO) build

release:
	$(CARGO) build --release

# All tests: unit tests beside the code, integration tests in tests/ (real binary, real sockets).
test:
	$(CARGO) build --release --bins
	$(CARGO) test --release -- --test-threads=2

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all
