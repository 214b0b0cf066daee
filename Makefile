# craftd build. `make` builds everything; `make test` installs what is missing
# (as root, on Debian), builds and runs every test; see README.md.
#
# Every src/<module>/*.c is linked into every program (no static archive:
# ar would keep one of two same-named files, e.g. http/addr.o and
# transport/addr.o); src/main.c is the daemon. Every tests/unit/test_*.c is its own cmocka binary. O= picks the
# output folder (the sanitizer build uses build-asan).

O        ?= build
CC       ?= cc
OPT      ?= -O2
SAN      ?=
CFLAGS   ?= $(OPT) -g
CFLAGS   += -std=gnu11 -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter \
            -Wno-missing-field-initializers -D_GNU_SOURCE -Isrc -Itests $(SAN)
LDFLAGS  += $(SAN)
PKGS      = libh2o libuv jansson
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lssl -lcrypto -lcrypt -lz
LIBS      = $(PKG_LIBS) -lpthread -lm
SEEDS    ?= 2000
SEED     ?=
JOBS     ?= $(shell nproc 2>/dev/null || echo 2)

LIB_SRCS  = $(wildcard src/*/*.c)
LIB_OBJS  = $(LIB_SRCS:%.c=$(O)/%.o)
UNIT_SRCS = $(wildcard tests/unit/test_*.c)
UNIT_BINS = $(UNIT_SRCS:tests/unit/%.c=$(O)/tests/%)
UNIT_HELP = $(filter-out $(UNIT_SRCS),$(wildcard tests/unit/*.c))
LINCHECK_SRCS = $(filter-out tests/lincheck/main.c,$(wildcard tests/lincheck/*.c))
SIM_SRCS  = $(wildcard tests/sim/*.c) $(LINCHECK_SRCS)
DAEMON    = $(if $(wildcard src/main.c),$(O)/craftd)
LINCHECK  = $(if $(wildcard tests/lincheck/main.c),$(O)/lincheck)
SIM       = $(if $(wildcard tests/sim/*.c),$(O)/sim)
# craftctl, the client: cli/*.c on libcurl and jansson only (docs/craftctl.md)
CTL_SRCS  = $(wildcard cli/*.c)
CTL       = $(if $(CTL_SRCS),$(O)/craftctl)
PYTEST    = /usr/bin/python3 -m pytest

.PHONY: install uninstall all test unit sim sim-teeth simtest cluster security faults asan valgrind fuzz bench bench-quick bench-peer-tls bench-kv bench-watch bench-latency bench-stability bench-failover bench-cow bench-stall bench-big run deps clean
all: $(LIB_OBJS) $(DAEMON) $(CTL) $(UNIT_BINS) $(SIM) $(LINCHECK)

$(O)/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "CC   $<"
	@$(CC) $(CFLAGS) $(PKG_CFLAGS) -MMD -MP -c $< -o $@

$(O)/craftd: $(O)/src/main.o $(LIB_OBJS)
	@echo "LINK $@"
	@$(CC) $(LDFLAGS) -o $@ $^ $(LIBS) -lsystemd

$(O)/craftctl: $(CTL_SRCS:%.c=$(O)/%.o)
	@echo "LINK $@"
	@$(CC) $(LDFLAGS) -o $@ $^ -lcurl $(shell pkg-config --libs jansson 2>/dev/null)

$(O)/tests/test_%: $(O)/tests/unit/test_%.o $(UNIT_HELP:%.c=$(O)/%.o) \
                   $(LINCHECK_SRCS:%.c=$(O)/%.o) $(LIB_OBJS)
	@mkdir -p $(dir $@)
	@echo "LINK $@"
	@$(CC) $(LDFLAGS) -o $@ $^ -lcmocka $(LIBS)

$(O)/sim: $(SIM_SRCS:%.c=$(O)/%.o) $(LIB_OBJS)
	@echo "LINK $@"
	@$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(O)/lincheck: $(O)/tests/lincheck/main.o $(LINCHECK_SRCS:%.c=$(O)/%.o)
	@echo "LINK $@"
	@$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

-include $(shell find $(O) -name '*.d' 2>/dev/null)
# Objects are never intermediate: keep them, so that a second make does not
# rebuild (and relink) what is already built.
.SECONDARY:

# Install build and test dependencies (Debian packages) when run as root and
# something is missing; a no-op otherwise.
deps:
	@sh scripts/deps.sh

test: deps
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory unit simtest cluster security faults

unit: $(UNIT_BINS)
	@sh scripts/run-unit.sh $(UNIT_BINS)

# The simulator: `make sim SEEDS=N` runs seeds 1..N on every core;
# `make sim SEED=x` replays one seed with its trace.
sim: $(SIM)
	@if [ -n "$(SEED)" ]; then $(O)/sim --seed $(SEED) --verbose; \
	 else $(O)/sim --seeds $(SEEDS) --jobs $(JOBS); fi

# make test runs more seeds than the 2,000 floor: they take seconds.
SIMTEST_SEEDS ?= 30000
# Each bug in tests/sim/mutants/ applied to a copy of the tree: how many
# seeds the simulator takes to catch it (see docs/testing.md).
sim-teeth:
	@SEEDS=$(SEEDS) JOBS=$(JOBS) sh scripts/sim-teeth.sh

simtest: $(SIM)
	$(O)/sim --seeds $(SIMTEST_SEEDS) --jobs $(JOBS)

cluster: $(DAEMON) $(LINCHECK)
	@sh scripts/run-pytest.sh tests/cluster

# Attacks on the HTTP port of a real cluster (tests/security, docs/security.md).
security: $(DAEMON)
	@sh scripts/run-pytest.sh tests/security

# Fault injection on real processes (tests/faults, docs/faults.md): the CI
# subset (~5 min; partitions need root and iptables); `make faults LONG=1`
# is the soak: random faults for FAULTS_DURATION seconds (default 7200).
faults: $(DAEMON) $(LINCHECK)
	@$(if $(LONG),FAULTS_LONG=1 )sh scripts/run-pytest.sh tests/faults

# Every sub-make gets the sanitizer flags, so that anything it relinks is
# sanitized too.
ASAN_MAKE = $(MAKE) --no-print-directory O=build-asan OPT=-O1 \
  SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all"
asan:
	@$(ASAN_MAKE) all
	@$(ASAN_MAKE) unit
	build-asan/sim --seeds 2000 --jobs $(JOBS)
	CRAFTD=build-asan/craftd sh scripts/run-pytest.sh tests/cluster
	CRAFTD=build-asan/craftd sh scripts/run-pytest.sh tests/security

valgrind: all
	@VALGRIND=1 sh scripts/run-unit.sh $(UNIT_BINS)
	valgrind -q --error-exitcode=1 --leak-check=full $(O)/sim --seeds 20 --jobs 1

run:
	@sh scripts/deps.sh run
	@$(MAKE) --no-print-directory $(O)/craftd
	mkdir -p data
	$(O)/craftd -id node0 -haddr localhost:11000 -raddr localhost:12000 data/node0

# libFuzzer (clang, ASan, UBSan): each target built from just the files it
# needs, seed corpora made by build-fuzz/fuzz_seeds from valid inputs, then
# each target run in turn on build-fuzz/corpus/<target> for FUZZ_SECONDS, or
# for FUZZ_RUNS executions if set. FUZZ_TARGETS picks some (docs/testing.md).
FUZZ_SECONDS ?= 60
FUZZ_RUNS    ?=
FUZZ_TARGETS ?= msg recover snap kvcmd peer
FUZZ_CC      ?= clang
FUZZ_WARN     = -g -O1 -std=gnu11 -Wall -Wextra -Werror -Wno-unused-parameter \
                -D_GNU_SOURCE -Isrc -Itests -fno-omit-frame-pointer
FUZZ_FLAGS    = $(FUZZ_WARN) -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
FUZZ_LIMIT    = $(if $(FUZZ_RUNS),-runs=$(FUZZ_RUNS),-max_total_time=$(FUZZ_SECONDS))
FUZZ_COMMON   = $(wildcard src/common/*.c)
FUZZ_STORAGE  = tests/fuzz/memfs.c $(wildcard src/storage/*.c)
FUZZ_KV       = $(wildcard src/kv/*.c)
FUZZ_SRCS_msg     = src/raft/codec.c
FUZZ_SRCS_recover = $(FUZZ_STORAGE)
FUZZ_SRCS_snap    = $(FUZZ_STORAGE) $(FUZZ_KV)
FUZZ_SRCS_kvcmd   = $(FUZZ_KV)
FUZZ_SRCS_peer    = src/transport/wire.c
FUZZ_LIBS_peer    = -lcrypto -luv
fuzz:
	@mkdir -p build-fuzz/corpus
	@for t in $(FUZZ_TARGETS); do \
	  echo "FUZZ build-fuzz/fuzz_$$t"; \
	  case $$t in \
	  msg) src="$(FUZZ_SRCS_msg)";; recover) src="$(FUZZ_SRCS_recover)";; \
	  snap) src="$(FUZZ_SRCS_snap)";; kvcmd) src="$(FUZZ_SRCS_kvcmd)";; \
	  peer) src="$(FUZZ_SRCS_peer)"; libs="$(FUZZ_LIBS_peer)";; \
	  *) echo "unknown fuzz target $$t"; exit 1;; esac; \
	  $(FUZZ_CC) $(FUZZ_FLAGS) -o build-fuzz/fuzz_$$t tests/fuzz/fuzz_$$t.c \
	    $$src $(FUZZ_COMMON) $$libs || exit 1; libs=; \
	done
	$(FUZZ_CC) $(FUZZ_WARN) -fsanitize=address,undefined -o build-fuzz/fuzz_seeds \
	  tests/fuzz/fuzz_seeds.c $(FUZZ_STORAGE) $(FUZZ_KV) $(FUZZ_COMMON)
	build-fuzz/fuzz_seeds build-fuzz/corpus
	@for t in $(FUZZ_TARGETS); do \
	  mkdir -p build-fuzz/corpus/$$t; \
	  if [ $$t = peer ]; then python3 tests/fuzz/peer_seeds.py build-fuzz/corpus/peer; fi; \
	  echo "FUZZ $$t: $(FUZZ_LIMIT)"; \
	  build-fuzz/fuzz_$$t $(FUZZ_LIMIT) -print_final_stats=1 \
	    -artifact_prefix=build-fuzz/$$t- build-fuzz/corpus/$$t || exit 1; \
	done

bench: all $(O)/watch_client
	@sh bench/run.sh
	@sh bench/peer_tls.sh

# One short round of the throughput runs, CPU per request and the 5-node
# clusters included (bench/run.sh with BENCH_QUICK=1; build/bench-quick/).
bench-quick: all
	@BENCH_QUICK=1 sh bench/run.sh

# Write throughput over plain TCP and over peer TLS (bench/PEER_TLS.md).
bench-peer-tls: all
	@sh bench/peer_tls.sh

# Idle watchers and one write's fan-out, craftd and etcd (bench/watch.sh).
bench-watch: $(O)/craftd $(O)/watch_client
	@sh bench/watch.sh

$(O)/watch_client: bench/watch_client.c
	@mkdir -p $(dir $@)
	@echo "CC   $<"
	@$(CC) $(CFLAGS) -o $@ $<

# Single-client latency, one keep-alive connection (bench/latency.sh).
bench-latency: $(DAEMON) $(O)/latency
	@sh bench/latency.sh

$(O)/latency: bench/latency.c
	@mkdir -p $(dir $@)
	@echo "LINK $@"
	@$(CC) $(CFLAGS) -o $@ $<
# Leader changes under 60 s of 64-connection writes with snapshots.
bench-stability: all
	@sh bench/stability.sh

# kill -9 of the leader, broken down by phase (median of 7).
bench-failover: all
	@python3 bench/failover.py

# Memory while snapshots are taken under random overwrites, the forked
# writer's copied pages included (bench/cow.py; COW_KEYS, COW_SECONDS).
bench-cow: all
	@d=$$(mktemp -d) && trap 'rm -rf "$$d"' EXIT && \
	 python3 bench/cow.py $(O)/craftd 28410 $$d/data $$d/log $$d/pids \
	   $${COW_KEYS:-1000000} $${COW_SECONDS:-45}

# Loop stalls and read p99.9 on 3 nodes with 10^6 keys while the leader writes
# a snapshot and while a wiped follower installs one (bench/stall.py;
# STALL_KEYS).
bench-stall: all
	@d=$$(mktemp -d); python3 bench/stall.py $(O)/craftd 28610 $$d $${STALL_KEYS:-1000000}; \
	 rc=$$?; [ $$rc -eq 0 ] && rm -rf $$d || echo "logs kept in $$d"; exit $$rc

# 10^7 keys (BIG_KEYS): one node's load rate, RSS, snapshots, longest loop
# iteration and restart to serving (helper.py rss-craftd), then the loop
# stalls and read p99.9 of bench-stall on 3 nodes holding them.
bench-big: all
	@d=$$(mktemp -d); k=$${BIG_KEYS:-10000000}; \
	 python3 bench/helper.py rss-craftd $(O)/craftd 28910 $$d/one $$d/one.log $$d/pids $$k && \
	 mkdir -p $$d/three && python3 bench/stall.py $(O)/craftd 28710 $$d/three $$k; \
	 rc=$$?; [ $$rc -eq 0 ] && rm -rf $$d || echo "logs kept in $$d"; exit $$rc

# The map alone: RSS, point get/put, listing (bench/kv_bench.c).
bench-kv: $(LIB_OBJS)
	@$(CC) $(CFLAGS) -o $(O)/kv_bench bench/kv_bench.c $(LIB_OBJS) $(LIBS)
	@$(O)/kv_bench && $(O)/kv_bench 1000000 random

# Installs both programs, their man pages (made from their --help by
# help2man, when it is there) and the systemd unit (docs/operations.md).
PREFIX  ?= /usr/local
DESTDIR ?=
BINDIR   = $(PREFIX)/bin
MANDIR   = $(PREFIX)/share/man/man1
UNITDIR  = $(PREFIX)/lib/systemd/system
install: $(O)/craftd $(O)/craftctl
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR) $(DESTDIR)$(UNITDIR)
	install -m 0755 $(O)/craftd $(O)/craftctl $(DESTDIR)$(BINDIR)/
	sed 's|@BINDIR@|$(BINDIR)|g' contrib/craftd.service > $(O)/craftd.service
	install -m 0644 $(O)/craftd.service $(DESTDIR)$(UNITDIR)/craftd.service
	@if command -v help2man >/dev/null; then \
	  help2man -N -n "a replicated key-value store on Raft" -o $(O)/craftd.1 $(O)/craftd && \
	  help2man -N -n "the command-line client of craftd" -o $(O)/craftctl.1 $(O)/craftctl && \
	  install -m 0644 $(O)/craftd.1 $(O)/craftctl.1 $(DESTDIR)$(MANDIR)/; \
	else echo "install: no help2man: man pages skipped (apt-get install help2man)"; fi

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/craftd $(DESTDIR)$(BINDIR)/craftctl \
	  $(DESTDIR)$(MANDIR)/craftd.1 $(DESTDIR)$(MANDIR)/craftctl.1 \
	  $(DESTDIR)$(UNITDIR)/craftd.service

clean:
	rm -rf build build-asan build-fuzz
