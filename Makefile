# hubtunnel — see README.md. `make demo` and `make test` set themselves up.
GO        ?= go
# VERSION (the file) is the next release. A build that is not a release is
# a pre-release of it, e.g. 0.1.0-dev.g1a2b3c4, so releases order after it
# (the self-updater compares versions). The CCU wants it lower case, one word.
VERSION   ?= $(shell cat VERSION)-dev.$(shell git describe --always --dirty=.dirty --abbrev=7 --match 'none' 2>/dev/null | tr 'A-Z' 'a-z' | sed 's/^/g/')
LDFLAGS   := -s -w -X github.com/hubtunnel/hubtunnel/version.Version=$(VERSION)
BIN       := bin
BINARIES  := hubtunnel hubrelay ccusim
# AGENT_TAGS are the build tags of every hubtunnel build (cmd/hubtunnel/build-tags:
# the agent without net/http's HTTP/2, which it never speaks; 460 KB on armv7).
AGENT_TAGS := $(shell cat cmd/hubtunnel/build-tags)

.PHONY: all build deps test test-unit test-e2e fuzz soak demo bench addon release deb deb-agent deb-relay oci clean

all: build

build:
	@mkdir -p $(BIN)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ $(addprefix ./cmd/,$(filter-out hubtunnel,$(BINARIES)))
	CGO_ENABLED=0 $(GO) build -trimpath -tags '$(AGENT_TAGS)' -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/hubtunnel

# deps installs what the tests use (Debian packages, Go modules) when missing.
deps:
	@scripts/deps.sh

# STATICCHECK is pinned; `go run` fetches that version into the module
# cache (not go.mod, so its dependencies cannot move ours).
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2

test: deps
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...
	$(GO) test -race -count=1 $(shell $(GO) list ./... | grep -v /e2e)
	$(SOCKIO_RAW)
	$(GO) test -count=1 -timeout 15m ./e2e/

# Under -race internal/sockio uses the syscall package's calls (race.go);
# its raw ones are tested here (wire's readv and writev with them), and by
# e2e's binaries.
SOCKIO_RAW = $(GO) test -count=1 ./internal/sockio/ ./wire/

test-unit:
	$(GO) test -race -count=1 $(shell $(GO) list ./... | grep -v /e2e)
	$(SOCKIO_RAW)

test-e2e: deps
	$(GO) test -count=1 -timeout 15m -v ./e2e/

# fuzz runs each fuzz target for a short while (FUZZTIME=1m for longer).
FUZZTIME ?= 20s
fuzz:
	$(GO) test ./wire/ -run '^$$' -fuzz FuzzReader -fuzztime $(FUZZTIME)
	$(GO) test ./firewall/ -run '^$$' -fuzz FuzzCheck -fuzztime $(FUZZTIME)
	$(GO) test ./ccusim/ -run '^$$' -fuzz FuzzDecodeMethodCall -fuzztime $(FUZZTIME)
	$(GO) test ./ccusim/ -run '^$$' -fuzz FuzzRunScript -fuzztime $(FUZZTIME)
	$(GO) test ./ccufirewall/ -run '^$$' -fuzz FuzzParse -fuzztime $(FUZZTIME)
	$(GO) test ./relay/ -run '^$$' -fuzz FuzzAgentInput -fuzztime $(FUZZTIME)
	$(GO) test ./relay/ -run '^$$' -fuzz FuzzCookies -fuzztime $(FUZZTIME)
	$(GO) test ./relay/ -run '^$$' -fuzz FuzzSavedSessions -fuzztime $(FUZZTIME)
	$(GO) test ./relay/ -run '^$$' -fuzz FuzzUDPInbound -fuzztime $(FUZZTIME) -fuzzminimizetime 3s
	$(GO) test ./relay/ -run '^$$' -fuzz FuzzAgentPort -fuzztime $(FUZZTIME) -fuzzminimizetime 3s
	$(GO) test ./relay/ -run '^$$' -fuzz FuzzPublicRequest -fuzztime $(FUZZTIME) -fuzzminimizetime 3s
	$(GO) test ./enroll/ -run '^$$' -fuzz FuzzParse -fuzztime $(FUZZTIME)
	$(GO) test ./enroll/ -run '^$$' -fuzz FuzzExchange -fuzztime $(FUZZTIME)
	$(GO) test ./stats/ -run '^$$' -fuzz FuzzReadRecord -fuzztime $(FUZZTIME)
	$(GO) test ./cmd/hubrelay/ -run '^$$' -fuzz FuzzReadBackup -fuzztime $(FUZZTIME)
	$(GO) test ./vpn/netstack/ -run '^$$' -fuzz FuzzJoin -fuzztime $(FUZZTIME)
	$(GO) test ./vpn/noise/ -run '^$$' -fuzz FuzzReadInitiation -fuzztime $(FUZZTIME)
	$(GO) test ./vpn/noise/ -run '^$$' -fuzz FuzzReadResponse -fuzztime $(FUZZTIME)

# soak runs mixed sessions through both transports for SOAK while the
# network is impaired and the relay restarted, then the long fault tests
# (60 s blackhole, the relay moving under a TCP agent); the samples go to
# dist/soak/ as CSV, SVG and Markdown, with the relays' and the agent's
# logs (about SOAK + 5 minutes; needs root).
SOAK ?= 30m
soak: deps build
	HT_SOAK=$(SOAK) HT_SOAK_OUT=$(CURDIR)/dist/soak $(GO) test -count=1 -timeout 4h -v -run 'TestSoak|TestNetworkFaults' ./e2e/

demo: build
	@scripts/demo.sh $(BIN)

# bench measures every budget of BRIEF.md with the real binaries on loopback,
# prints one table and writes BENCHMARKS.md (about 12 minutes; IDLE=1m
# HUBS=200 for a quicker look; scripts/bench.sh lists the knobs).
# PHASES=peers runs only the comparison with frp, chisel and OpenSSH.
bench: build
	@GO=$(GO) scripts/bench.sh $(BIN)

# addon builds the CCU addon dist/hubtunnel-$(VERSION).tgz (ARCHS="armv7"
# limits the binaries; addon/README.md describes the package).
addon:
	@GO=$(GO) scripts/addon.sh "$(VERSION)" dist

# release builds every architecture at VERSION, stamped with the public key
# of KEY (a signing key from `go run ./cmd/hubrelease keygen FILE`), and
# signs the manifest: a folder hubrelay serves with releases_dir. The addon
# package of the same binaries goes into OUT too.
#   make release VERSION=0.2.0 KEY=release.key [OUT=dist/releases]
OUT ?= dist/releases
release:
	@GO=$(GO) scripts/release.sh "$(VERSION)" "$(KEY)" "$(OUT)"

# deb builds both Debian packages into dist/ (ARCHS="amd64 arm64 armhf" by
# default): the agent's (for debmatic) and the relay's.
deb: deb-agent deb-relay

# deb-agent builds the agent's Debian package, dist/hubtunnel_<version>_<arch>.deb,
# for debmatic: a hardened systemd unit, the config in /etc/config/addons/hubtunnel,
# the panel's lighttpd rule and the control-panel button (packaging/hubtunnel/).
deb-agent:
	@GO=$(GO) scripts/deb-agent.sh "$(VERSION)" dist

# deb-relay builds the relay's Debian package, dist/hubrelay_<version>_<arch>.deb
# (ARCHS="amd64 arm64 armhf" by default): a hardened systemd unit, a system
# user, /etc/hubrelay/relay.toml (packaging/hubrelay/).
deb-relay:
	@GO=$(GO) scripts/deb-relay.sh "$(VERSION)" dist

# oci builds the relay's container image without a container engine: an OCI
# layout dist/hubrelay-oci and dist/hubrelay-$(VERSION).oci.tar
# (ARCHS="amd64 arm64"); push it with skopeo.
oci:
	@GO=$(GO) scripts/oci-relay.sh "$(VERSION)" dist

clean:
	rm -rf $(BIN)
