# tiergate: top-level build.  Sources are found by wildcard, so adding a
# file to shared/, spank/, gateway/ or tests/unit/ needs no edit here.
#
#   make            build everything into build/
#   make unit       cmocka unit tests
#   make test       deps + build + unit + integration (real Slurm sites)
#   make asan       unit tests under AddressSanitizer + UBSan
#   make demo       the main job, end to end
#   make bench      the benchmarks (bench/run; figures in docs/performance.md)
#   make install    PREFIX=/usr/local DESTDIR=
#   make format / make lint / make clean

CC      ?= gcc
BUILD   ?= build
PREFIX  ?= /usr/local
DESTDIR ?=
SLURM_PLUGSTACK_DIR ?= $(PREFIX)/lib/slurm

CFLAGS  ?= -O2 -g
WARN     = -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wswitch-enum \
	   -Wmissing-prototypes -Wstrict-prototypes -Wno-unused-parameter
HARDEN   = -D_FORTIFY_SOURCE=2 -fstack-protector-strong -fPIC
ALL_CFLAGS = -std=gnu11 $(WARN) $(HARDEN) $(CFLAGS) -D_GNU_SOURCE \
	     -Ishared -MMD -MP $(EXTRA_CFLAGS)
LDHARDEN = -Wl,-z,relro -Wl,-z,now
ALL_LDFLAGS = $(LDHARDEN) $(LDFLAGS) $(EXTRA_LDFLAGS)

# Libraries, each wrapped in one place of the sources (see docs/architecture.md)
SHARED_LIBS  = -ljwt -ljansson -lmunge -lcrypto
GATEWAY_LIBS = -lmicrohttpd -lcurl -lsqlite3 -lyajl -lpthread
SPANK_LIBS   = -lcurl
# The plugin is loaded by every srun/sbatch/slurmstepd: it links nothing
# but libc.  libcurl, libmunge, libjwt and OpenSSL cost ~10 ms per srun
# (docs/performance.md), so they live in tiergate-relay, which it execs;
# events are written without jansson (spank/event.c).
PLUGIN_LIBS  =
PLUGIN_FORBIDDEN = curl_|jwt_|munge_|EVP_|OPENSSL_|json_

SHARED_SRC  := $(wildcard shared/*.c)
# spank/: files that include <slurm/spank.h> are dispatch.c and ctx_*.c; the
# rest (args, tier decision, enforcement maths, events, spool) is plain C in
# libtgspank.a, linked into the plugin, the relay and the unit tests.
SPANK_SRC   := $(wildcard spank/*.c)
SPANK_HOOK_SRC := $(filter spank/dispatch.c spank/ctx_%.c,$(SPANK_SRC))
SPANK_CORE_SRC := $(filter-out $(SPANK_HOOK_SRC),$(SPANK_SRC))
RELAY_SRC   := $(wildcard spank/relay/*.c)
GW_MAIN     := gateway/main.c
GW_LIB_SRC  := $(filter-out $(GW_MAIN),$(wildcard gateway/*.c))
CLI_SRC     := $(wildcard gateway/cli/*.c)
UNIT_SRC    := $(wildcard tests/unit/test_*.c)
TOOL_SRC    := $(wildcard tests/tools/*.c)
UNIT_HELPER_SRC := $(filter-out $(UNIT_SRC),$(wildcard tests/unit/*.c))

obj = $(patsubst %.c,$(BUILD)/%.o,$(1))

LIBSHARED  := $(BUILD)/shared/libtgshared.a
LIBGATEWAY := $(BUILD)/gateway/libtggateway.a
LIBSPANK   := $(BUILD)/spank/libtgspank.a
PLUGIN     := $(BUILD)/spank/tiergate.so
RELAY      := $(BUILD)/spank/tiergate-relay
DAEMON     := $(BUILD)/gateway/tiergated
CLI        := $(BUILD)/gateway/tiergate
UNIT_BINS  := $(patsubst tests/unit/%.c,$(BUILD)/tests/unit/%,$(UNIT_SRC))
TOOL_BINS  := $(patsubst tests/tools/%.c,$(BUILD)/tests/tools/%,$(TOOL_SRC))

TARGETS := $(LIBSHARED)
ifneq ($(SPANK_SRC),)
TARGETS += $(PLUGIN)
endif
ifneq ($(RELAY_SRC),)
TARGETS += $(RELAY)
endif
ifneq ($(wildcard $(GW_MAIN)),)
TARGETS += $(DAEMON)
endif
ifneq ($(CLI_SRC),)
TARGETS += $(CLI)
endif

.SECONDARY:
.PHONY: all deps unit integration test asan demo install clean format \
	format-check lint bench
all: $(TARGETS) $(UNIT_BINS) $(TOOL_BINS)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

# the relay and the unit tests see the headers of what they exercise
$(call obj,$(RELAY_SRC)): ALL_CFLAGS += -Ispank
$(call obj,$(UNIT_SRC) $(UNIT_HELPER_SRC)): ALL_CFLAGS += -Ispank -Igateway

$(LIBSHARED): $(call obj,$(SHARED_SRC))
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(LIBGATEWAY): $(call obj,$(GW_LIB_SRC))
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(LIBSPANK): $(call obj,$(SPANK_CORE_SRC))
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

# The plugin is dlopen'ed into srun, slurmd and slurmstepd: export only the
# slurm_spank_* and plugin_* symbols (spank/tiergate.lds).
$(PLUGIN): $(call obj,$(SPANK_HOOK_SRC)) $(LIBSPANK) $(LIBSHARED) spank/tiergate.lds
	$(CC) -shared -o $@.tmp $(call obj,$(SPANK_HOOK_SRC)) $(LIBSPANK) $(LIBSHARED) \
		-Wl,--version-script=spank/tiergate.lds $(ALL_LDFLAGS) $(PLUGIN_LIBS)
	@if nm -u $@.tmp | grep -qE ' ($(PLUGIN_FORBIDDEN))'; then \
		echo "$@: must not use: $$(nm -u $@.tmp | grep -E ' ($(PLUGIN_FORBIDDEN))' | xargs)" >&2; \
		rm -f $@.tmp; exit 1; fi
	mv -f $@.tmp $@

$(RELAY): $(call obj,$(RELAY_SRC)) $(LIBSPANK) $(LIBSHARED)
	$(CC) -o $@ $(call obj,$(RELAY_SRC)) $(LIBSPANK) $(LIBSHARED) $(ALL_LDFLAGS) \
		$(SPANK_LIBS) $(SHARED_LIBS)

$(DAEMON): $(call obj,$(GW_MAIN)) $(LIBGATEWAY) $(LIBSHARED)
	$(CC) -o $@ $^ $(ALL_LDFLAGS) $(GATEWAY_LIBS) $(SHARED_LIBS)

$(CLI): $(call obj,$(CLI_SRC)) $(LIBSHARED)
	$(CC) -o $@ $^ $(ALL_LDFLAGS) -lcurl $(SHARED_LIBS)

# One binary per module.  tests/unit/test_X.wrap, if present, lists symbols
# to route through -Wl,--wrap (mocks for faults real parts cannot produce).
UNIT_DEPS := $(call obj,$(UNIT_HELPER_SRC)) $(LIBSHARED)
ifneq ($(SPANK_CORE_SRC),)
UNIT_DEPS := $(LIBSPANK) $(UNIT_DEPS)
endif
ifneq ($(GW_LIB_SRC),)
UNIT_DEPS := $(LIBGATEWAY) $(UNIT_DEPS)
endif
$(BUILD)/tests/unit/%: $(BUILD)/tests/unit/%.o $(UNIT_DEPS)
	$(CC) -o $@ $< $(UNIT_DEPS) $(ALL_LDFLAGS) \
		$(if $(wildcard tests/unit/$*.wrap),$(addprefix -Wl$(comma)--wrap=,$(shell cat tests/unit/$*.wrap))) \
		-lcmocka $(GATEWAY_LIBS) $(SPANK_LIBS) $(SHARED_LIBS)
comma := ,

# Small programs the integration tests drive (e.g. mint-ticket).
$(BUILD)/tests/tools/%: $(BUILD)/tests/tools/%.o $(LIBSHARED)
	$(CC) -o $@ $^ $(ALL_LDFLAGS) $(SHARED_LIBS)

deps:
	@scripts/install-deps

unit: $(UNIT_BINS)
	@tests/unit/run $(UNIT_BINS)

integration: all
	@tests/integration/run

test: deps
	$(MAKE) all
	$(MAKE) unit
	$(MAKE) integration

asan:
	$(MAKE) BUILD=build-asan \
		EXTRA_CFLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all -U_FORTIFY_SOURCE -O1" \
		EXTRA_LDFLAGS="-fsanitize=address,undefined" unit

demo: deps
	$(MAKE) all
	@scripts/demo

bench: all
	@bench/run

install: all
	install -d $(DESTDIR)$(SLURM_PLUGSTACK_DIR) $(DESTDIR)$(PREFIX)/bin \
		$(DESTDIR)$(PREFIX)/sbin $(DESTDIR)$(PREFIX)/share/man/man1 \
		$(DESTDIR)$(PREFIX)/share/man/man8
	$(if $(wildcard $(PLUGIN)),install -m 0755 $(PLUGIN) $(DESTDIR)$(SLURM_PLUGSTACK_DIR)/)
	# the plugin finds its relay beside itself (or plugstack relay=)
	$(if $(wildcard $(RELAY)),install -m 0755 $(RELAY) $(DESTDIR)$(SLURM_PLUGSTACK_DIR)/)
	$(if $(wildcard $(DAEMON)),install -m 0755 $(DAEMON) $(DESTDIR)$(PREFIX)/sbin/)
	$(if $(wildcard $(CLI)),install -m 0755 $(CLI) $(DESTDIR)$(PREFIX)/bin/)
	install -m 0644 docs/man/tiergate.1 $(DESTDIR)$(PREFIX)/share/man/man1/
	install -m 0644 docs/man/tiergated.8 $(DESTDIR)$(PREFIX)/share/man/man8/

C_FILES = $(shell git ls-files '*.c' '*.h' 2>/dev/null)
format:
	clang-format -i $(C_FILES)
format-check:
	clang-format --dry-run --Werror $(C_FILES)
# cppcheck without the system headers: their macros (json_object_foreach,
# cmocka's) are unknown to it, hence unknownMacro; ctuuninitvar misreads
# out-parameters filled by the callee (spool_job_open).
lint:
	cppcheck --quiet --error-exitcode=1 --std=c11 --enable=warning,portability \
		--inline-suppr --suppress=missingIncludeSystem \
		--suppress=unknownMacro --suppress=ctuuninitvar \
		-Ishared -Igateway -Ispank -D__GNUC__ $(C_FILES)

clean:
	rm -rf build build-asan

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
