# postcopyd - one Makefile for the whole tree.
#
#   make            build everything into $(BUILD) (default: build/)
#   make check      build and run the test suite (configures itself first)
#   make install    install programs, unit, manuals under $(PREFIX) (and
#                   DESTDIR); make uninstall removes them again
#   make clean      remove $(BUILD)
#   make fuzz       libFuzzer targets, FUZZ_TIME s each, in $(BUILD_FUZZ)
#
# A second build (e.g. the sanitizer one) lives in its own directory:
#   ./configure --builddir=build-asan --enable-sanitizers
#   make check BUILD=build-asan

BUILD ?= build
.DEFAULT_GOAL := all
Q ?= @

# Not configured yet: configure ourselves, installing what is missing.
# GNU make rebuilds an included makefile that has a rule, then restarts.
$(BUILD)/config.mak:
	./configure --install-deps --builddir=$(BUILD)

include $(BUILD)/config.mak

# make install PREFIX=/usr DESTDIR=/tmp/root overrides configure's prefix.
DESTDIR ?=
BINDIR = $(PREFIX)/bin
SBINDIR = $(PREFIX)/sbin
# The synthetic VM is a test tool: not in the operator's PATH.
LIBEXECDIR = $(PREFIX)/libexec/postcopyd
# Units follow the prefix: a distribution's /usr has them in /lib.
UNITDIR ?= $(if $(filter /usr,$(PREFIX:%/=%)),/lib/systemd/system,$(PREFIX)/lib/systemd/system)
# The daemon reads /etc/postcopyd/postcopyd.conf whatever the prefix.
CONFDIR = /etc/postcopyd
MANDIR = $(PREFIX)/share/man
BASHCOMPDIR = $(PREFIX)/share/bash-completion/completions
# Hand-written roff pages: docs/NAME.SECTION.
MANPAGES := $(wildcard docs/*.[158])

PROTOS := $(wildcard proto/*.proto)
PROTO_C := $(PROTOS:proto/%.proto=$(BUILD)/proto/%.pb-c.c)
PROTO_H := $(PROTO_C:.c=.h)
PROTO_O := $(PROTO_C:.c=.o)

DAEMON_DIRS := $(sort $(dir $(wildcard daemon/*/*.c daemon/*/*.h)))
# The verbs calls and what needs the rdma-core headers: RDMA builds only.
RDMA_SRCS := transport/rdma.c transport/rdma_error.c transport/rdma_remote.c \
	transport/rdma_double.c
RDMA_TESTS := tests/unit/test_rdma_error.c tests/unit/test_rdma_link.c
LIB_SRCS := $(filter-out daemon/main/main.c \
	$(if $(filter yes,$(CONFIG_RDMA)),,$(RDMA_SRCS)), \
	$(wildcard common/*.c daemon/*/*.c transport/*.c))
LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/%.o) $(PROTO_O)
LIB := $(BUILD)/libpostcopy.a

GUEST_SRCS := $(wildcard tools/guest/*.c)
GUEST := $(BUILD)/postcopy-guest
MIGRATE_SRCS := $(wildcard tools/migrate/*.c)
MIGRATE := $(BUILD)/postcopy-migrate

TESTLIB_SRCS := $(wildcard tests/lib/*.c)
TESTLIB_OBJS := $(TESTLIB_SRCS:%.c=$(BUILD)/%.o)
TEST_SRCS := $(filter-out $(if $(filter yes,$(CONFIG_RDMA)),,$(RDMA_TESTS)), \
	$(wildcard tests/unit/test_*.c tests/integration/test_*.c))
TESTS := $(TEST_SRCS:tests/%.c=$(BUILD)/tests/%)
E2E_TESTS := $(wildcard tests/e2e/test_*.sh)
# Checks of the source tree itself (include cycles among daemon/ folders).
STATIC_TESTS := $(wildcard tests/static/test_*.sh)

# libFuzzer targets (tests/fuzz/README.md): clang, their own build dir.
BUILD_FUZZ ?= build-fuzz
FUZZ_TIME ?= 20
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)
FUZZERS := $(FUZZ_SRCS:tests/fuzz/%.c=$(BUILD)/fuzz/%)

PROGS := $(GUEST) $(if $(MIGRATE_SRCS),$(MIGRATE)) \
	$(if $(wildcard daemon/main/main.c),$(BUILD)/postcopyd)

ALL_CFLAGS = $(CFLAGS) -MMD -MP -I. -Icommon $(DAEMON_DIRS:%/=-I%) -Itransport \
	-I$(BUILD) \
	-I$(BUILD)/proto -Itests/lib

.PHONY: all check tests install uninstall clean fmt fmt-check demo fuzz fuzz-run
.SUFFIXES:
.DELETE_ON_ERROR:
# Keep generated protobuf-c sources and test objects: they are not
# temporaries.  (Not every target: then a moved source would not rebuild
# an archive whose old objects are gone.)
.SECONDARY: $(PROTO_C) $(PROTO_H) $(PROTO_O) $(TEST_SRCS:%.c=$(BUILD)/%.o)

all: $(PROGS) $(TESTS)

$(BUILD)/proto/%.pb-c.c $(BUILD)/proto/%.pb-c.h: proto/%.proto
	@mkdir -p $(dir $@)
	@echo "  PROTOC  $<"
	$(Q)$(PROTOC_C) --proto_path=proto --c_out=$(BUILD)/proto $<

$(BUILD)/proto/%.pb-c.o: $(BUILD)/proto/%.pb-c.c
	@echo "  CC      $@"
	$(Q)$(CC) $(ALL_CFLAGS) -Wno-missing-prototypes -c -o $@ $<

# Every object may include a generated header: build those first.
$(BUILD)/%.o: %.c $(BUILD)/config.mak | $(PROTO_H)
	@mkdir -p $(dir $@)
	@echo "  CC      $@"
	$(Q)$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(LIB): $(LIB_OBJS)
	@echo "  AR      $@"
	$(Q)rm -f $@ && ar rcs $@ $^

$(GUEST): $(GUEST_SRCS:%.c=$(BUILD)/%.o) $(LIB)
	@echo "  LINK    $@"
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(MIGRATE): $(MIGRATE_SRCS:%.c=$(BUILD)/%.o) $(LIB)
	@echo "  LINK    $@"
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/postcopyd: $(BUILD)/daemon/main/main.o $(LIB)
	@echo "  LINK    $@"
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/tests/%: $(BUILD)/tests/%.o $(TESTLIB_OBJS) $(LIB)
	@echo "  LINK    $@"
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

tests: $(TESTS)

check: all
	$(Q)tests/run-tests.sh $(BUILD) $(STATIC_TESTS) $(TESTS) $(E2E_TESTS)

# Two hosts (network namespaces), a QEMU VM migrated between them (root);
# VMM=synthetic migrates a postcopy-guest instead (tests/e2e/demo.sh).
#   make demo DEMO_FLAGS='--mode postcopy --backing shm --size 512M'
VMM ?= qemu
demo: all
	$(if $(filter-out qemu synthetic,$(VMM)),$(error VMM=$(VMM): qemu or synthetic))
	$(Q)tests/e2e/$(if $(filter synthetic,$(VMM)),demo.sh,demo_qemu.sh) \
		--build $(BUILD) $(DEMO_FLAGS)

# The link cut mid-postcopy, 20 rounds: all must complete intact (root).
.PHONY: soak
soak: all
	$(Q)tests/e2e/soak.sh --build $(BUILD)

# Figures beside floors measured in the same run, two hosts (root; about
# 10 min, + ~5 min of QEMU side-by-side runs): $(BUILD)/bench/results.json,
# table.txt, latency.png, downtime.png, qemu_compare.png.
#   make bench BENCH_FLAGS='--quick'
BENCH_TOOLS := $(BUILD)/bench-tools/fault_floor $(BUILD)/bench-tools/tcp_floor
.PHONY: bench

$(BUILD)/bench-tools/%: tests/bench/%.c tests/bench/floor_stats.h $(BUILD)/config.mak
	@mkdir -p $(dir $@)
	@echo "  CC      $@"
	$(Q)$(CC) $(CFLAGS) -Itests/bench $(LDFLAGS) -o $@ $<

bench: all $(BENCH_TOOLS)
	$(Q)tests/bench/bench.sh --build $(BUILD) $(BENCH_FLAGS)

$(BUILD)/fuzz/%: tests/fuzz/%.c $(LIB) | $(PROTO_H)
	@mkdir -p $(dir $@)
	@echo "  LINK    $@"
	$(Q)$(CC) $(ALL_CFLAGS) $(FUZZ_CFLAGS) -fsanitize=fuzzer $(LDFLAGS) -o $@ $< \
		$(FUZZ_OBJS) $(LIB) $(LIBS)

# The CLI's reply parser and renderers live in postcopy-migrate, not in
# the library.
MIGRATE_LIB_OBJS := $(addprefix $(BUILD)/tools/migrate/, \
	client.o jsonq.o migstats.o progress.o summary.o)
$(BUILD)/fuzz/fuzz_cli_reply: FUZZ_CFLAGS = -Itools/migrate
$(BUILD)/fuzz/fuzz_cli_reply: FUZZ_OBJS = $(MIGRATE_LIB_OBJS)
$(BUILD)/fuzz/fuzz_cli_reply: $(MIGRATE_LIB_OBJS)

# Configure $(BUILD_FUZZ) for fuzzing once, then build and run there.
fuzz:
	$(Q)test -f $(BUILD_FUZZ)/config.mak || \
		./configure --install-deps --enable-fuzz --builddir=$(BUILD_FUZZ)
	$(Q)$(MAKE) --no-print-directory BUILD=$(BUILD_FUZZ) fuzz-run

ifneq ($(filter fuzz-run,$(MAKECMDGOALS)),)
ifneq ($(CONFIG_FUZZ),yes)
$(error $(BUILD) is not a fuzzing build: ./configure --enable-fuzz --builddir=$(BUILD))
endif
endif
fuzz-run: $(FUZZERS)
	$(Q)tests/fuzz/run.sh $(BUILD) $(FUZZ_TIME) $(FUZZERS)

# ---- testvm: a freestanding multiboot guest for real QEMU (tools/testvm/).
# A kernel, not a host program: its own flags (never the configured CFLAGS
# with sanitizers or pkg-config paths) and only gcc's own freestanding
# headers, so -m32 needs no multilib package.
TESTVM := $(BUILD)/testvm/testvm.elf
TESTVM_OBJS := $(BUILD)/testvm/start.o $(BUILD)/testvm/testvm.o
TESTVM_CC ?= gcc
TESTVM_LD ?= ld
TESTVM_CFLAGS := -m32 -std=gnu11 -ffreestanding -nostdlib -fno-pic -fno-pie \
	-fno-stack-protector -fno-asynchronous-unwind-tables \
	-mgeneral-regs-only -O2 -Wall -Wextra -Werror -MMD -MP

all: $(TESTVM)

$(BUILD)/testvm/%.o: tools/testvm/%.c
	@mkdir -p $(dir $@)
	@echo "  CC      $@"
	$(Q)$(TESTVM_CC) $(TESTVM_CFLAGS) -c -o $@ $<

$(BUILD)/testvm/%.o: tools/testvm/%.S
	@mkdir -p $(dir $@)
	@echo "  AS      $@"
	$(Q)$(TESTVM_CC) $(TESTVM_CFLAGS) -c -o $@ $<

$(TESTVM): $(TESTVM_OBJS) tools/testvm/testvm.ld
	@echo "  LD      $@"
	$(Q)$(TESTVM_LD) -m elf_i386 --no-warn-rwx-segments \
		-T tools/testvm/testvm.ld -o $@ $(TESTVM_OBJS)
# ---- end of testvm

# Programs, the units, an example config (never over an existing
# postcopyd.conf), the manuals, bash completion and the libvirt hook
# (tools/libvirt-hook/postcopyd).  INSTALLED lists every file, for make
# uninstall.
LIBVIRT_HOOKDIR ?= /etc/libvirt/hooks/qemu.d
INSTALLED = $(SBINDIR)/postcopyd $(BINDIR)/postcopy-migrate \
	$(LIBEXECDIR)/postcopy-guest $(UNITDIR)/postcopyd.service \
	$(UNITDIR)/postcopyd.socket \
	$(CONFDIR)/postcopyd.conf.example \
	$(BASHCOMPDIR)/postcopy-migrate $(LIBVIRT_HOOKDIR)/postcopyd \
	$(foreach m,$(MANPAGES),$(MANDIR)/man$(subst .,,$(suffix $(m)))/$(notdir $(m)))
install: $(PROGS)
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(SBINDIR) \
		$(DESTDIR)$(LIBEXECDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(CONFDIR) \
		$(DESTDIR)$(BASHCOMPDIR) \
		$(addprefix $(DESTDIR)$(MANDIR)/man,$(sort $(subst .,,$(suffix $(MANPAGES)))))
	install -m 755 $(BUILD)/postcopyd $(DESTDIR)$(SBINDIR)/
	install -m 755 $(MIGRATE) $(DESTDIR)$(BINDIR)/
	install -m 755 $(GUEST) $(DESTDIR)$(LIBEXECDIR)/
	sed 's|@SBINDIR@|$(SBINDIR)|g' systemd/postcopyd.service.in \
		>$(DESTDIR)$(UNITDIR)/postcopyd.service
	chmod 644 $(DESTDIR)$(UNITDIR)/postcopyd.service
	install -m 644 systemd/postcopyd.socket $(DESTDIR)$(UNITDIR)/
	install -m 644 docs/postcopyd.conf.example $(DESTDIR)$(CONFDIR)/
	install -m 644 tools/migrate/postcopy-migrate.bash \
		$(DESTDIR)$(BASHCOMPDIR)/postcopy-migrate
	$(foreach m,$(MANPAGES),install -m 644 $(m) \
		$(DESTDIR)$(MANDIR)/man$(subst .,,$(suffix $(m)))/ &&) true
	install -d $(DESTDIR)$(LIBVIRT_HOOKDIR)
	install -m 755 tools/libvirt-hook/postcopyd $(DESTDIR)$(LIBVIRT_HOOKDIR)/

# Leaves /etc/postcopyd/postcopyd.conf (the operator's) and the state dir.
uninstall:
	rm -f $(addprefix $(DESTDIR),$(INSTALLED))
	-rmdir $(DESTDIR)$(LIBEXECDIR) $(DESTDIR)$(CONFDIR) 2>/dev/null

clean:
	rm -rf $(BUILD)

FMT_SRCS = $(wildcard common/*.[ch] daemon/*/*.[ch] transport/*.[ch] tools/*/*.[ch] \
	tests/*/*.[ch])
fmt:
	clang-format -i $(FMT_SRCS)
fmt-check:
	clang-format --dry-run -Werror $(FMT_SRCS)

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
