# hubtunnel — see README.md. `make demo` and `make test` set themselves up.
GO        ?= go
# The CCU wants the version lower case and one word.
VERSION   ?= $(shell v=$$(git describe --tags --always --dirty 2>/dev/null | tr 'A-Z' 'a-z'); echo $${v:-dev})
LDFLAGS   := -s -w -X github.com/hubtunnel/hubtunnel/version.Version=$(VERSION)
BIN       := bin
BINARIES  := hubtunnel hubrelay ccusim

.PHONY: all build deps test test-unit test-e2e fuzz demo bench clean

all: build

build:
	@mkdir -p $(BIN)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ $(addprefix ./cmd/,$(BINARIES))

# deps installs what the tests use (Debian packages, Go modules) when missing.
deps:
	@scripts/deps.sh

test: deps
	$(GO) vet ./...
	$(GO) test -race -count=1 $(shell $(GO) list ./... | grep -v /e2e)
	$(GO) test -count=1 -timeout 15m ./e2e/

test-unit:
	$(GO) test -race -count=1 $(shell $(GO) list ./... | grep -v /e2e)

test-e2e: deps
	$(GO) test -count=1 -timeout 15m -v ./e2e/

# fuzz runs each fuzz target for a short while (FUZZTIME=1m for longer).
FUZZTIME ?= 20s
fuzz:
	$(GO) test ./wire/ -run '^$$' -fuzz FuzzReader -fuzztime $(FUZZTIME)
	$(GO) test ./firewall/ -run '^$$' -fuzz FuzzCheck -fuzztime $(FUZZTIME)

demo: build
	@scripts/demo.sh $(BIN)

# bench measures every budget of BRIEF.md with the real binaries on loopback,
# prints one table and writes BENCHMARKS.md (about 9 minutes; IDLE=1m
# HUBS=200 for a quicker look; scripts/bench.sh lists the knobs).
bench: build
	@GO=$(GO) scripts/bench.sh $(BIN)

clean:
	rm -rf $(BIN)
