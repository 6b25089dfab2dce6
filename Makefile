# hearth build.
#
#   make            release build: build/release/hearth (+ libhearth.a)
#   make SAN=1      ASan+UBSan build in build/asan/
#   make test       builds both and runs the whole suite (tests/run.sh)
#   make fuzz       libFuzzer targets (clang) in build/fuzz/
#   make CUDA=1     with the CUDA backend (src/cuda/, nvcc) in build/cuda/
#   make cuda-check compiles the CUDA sources only (no GPU needed)
#   make format     rewrites sources with clang-format; make format-check only checks
#
# Only GNU make and a C11 compiler are required, with three libraries from
# Debian: PCRE2 (libpcre2-dev, pre-tokenizer regexes), jansson
# (libjansson-dev, JSON in checkpoints, tokenizer files and the API) and
# libmicrohttpd (libmicrohttpd-dev, the HTTP server of `hearth serve`); for
# the agents runtime libyaml (libyaml-dev, agent definitions), SQLite
# (libsqlite3-dev, the run store) and libcurl (libcurl4-openssl-dev, remote
# engines and `hearth agents`).

CC ?= cc
ifeq ($(origin CC),default)
CC := cc
endif

WARN := -std=c11 -Wall -Wextra -Wpedantic -Wshadow -Werror
DEFS := -D_GNU_SOURCE
INCS := -Iinclude -Isrc -Ibuild/gen
PCRE_LIBS := -lpcre2-8
LIBS := $(PCRE_LIBS) -ljansson -lmicrohttpd -lyaml -lsqlite3 -lcurl -lpthread -lm

ifeq ($(SAN),1)
BUILD := build/asan
OPT := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
LDSAN := -fsanitize=address,undefined
else
BUILD := build/release
OPT := -O2 -g
LDSAN :=
endif

# The CUDA backend: sm_90a machine code plus PTX that newer GPUs compile.
CUDA_HOME ?= /usr/local/cuda
NVCC ?= $(CUDA_HOME)/bin/nvcc
NVCC_ARCH ?= -gencode=arch=compute_90a,code=sm_90a -gencode=arch=compute_90,code=compute_90
NVCC_FLAGS := -O3 -std=c++17 -Iinclude -Isrc -Xcompiler -Wall,-Wextra,-Werror -Werror all-warnings
CU_SRCS := $(sort $(wildcard src/cuda/*.cu))
ifeq ($(CUDA),1)
BUILD := build/cuda
DEFS += -DHEARTH_CUDA
LIBS += -L$(CUDA_HOME)/lib64 -lcudart_static -lrt -ldl -lstdc++
CU_OBJS := $(CU_SRCS:%.cu=$(BUILD)/obj/%.o)
else
CU_OBJS :=
endif

CFLAGS_ALL := $(WARN) $(DEFS) $(INCS) $(OPT) $(CFLAGS)
LDFLAGS_ALL := $(LDSAN) $(LDFLAGS)

LIB_SRCS := $(sort $(wildcard src/util/*.c src/gguf/*.c src/kernels/*.c src/tokenizer/*.c \
                              src/model/*.c src/sample/*.c src/convert/*.c \
                              src/sched/*.c src/server/*.c src/gen/*.c src/agents/*.c))
CLI_SRCS := $(sort $(wildcard src/cli/*.c))
TEST_SRCS := $(sort $(wildcard tests/test_*.c))
BENCH_SRCS := $(sort $(wildcard bench/*.c))

LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/obj/%.o)
CLI_OBJS := $(CLI_SRCS:%.c=$(BUILD)/obj/%.o)
TEST_BINS := $(TEST_SRCS:tests/%.c=$(BUILD)/tests/%)
BENCH_BINS := $(BENCH_SRCS:bench/%.c=$(BUILD)/bench/%)
LIB := $(BUILD)/libhearth.a
BIN := $(BUILD)/hearth

.PHONY: all test tests bench fuzz format format-check clean cuda-check
.SECONDARY:
all: $(BIN) $(TEST_BINS) $(BENCH_BINS)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC  $<"
	@$(CC) $(CFLAGS_ALL) -MMD -MP -c $< -o $@

$(BUILD)/obj/%.o: %.cu $(wildcard src/cuda/*.cuh src/cuda/*.h) src/kernels/quant.h include/hearth.h
	@mkdir -p $(dir $@)
	@echo "  NVCC $<"
	@$(NVCC) $(NVCC_FLAGS) $(NVCC_ARCH) -c $< -o $@

$(LIB): $(LIB_OBJS) $(CU_OBJS)
	@rm -f $@
	@ar rcs $@ $^

$(BIN): $(CLI_OBJS) $(LIB)
	$(CC) $(LDFLAGS_ALL) -o $@ $(CLI_OBJS) $(LIB) $(LIBS)

$(BUILD)/tests/%: $(BUILD)/obj/tests/%.o $(BUILD)/obj/tests/harness.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) -o $@ $< $(BUILD)/obj/tests/harness.o $(LIB) $(LIBS)

$(BUILD)/bench/%: $(BUILD)/obj/bench/%.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) -o $@ $< $(LIB) $(LIBS)

# The dashboard: the files under web/ become C arrays in one generated
# header (tools/embed.sh: POSIX sh and od), compiled into src/server/web.c.
WEB_FILES := $(sort $(wildcard web/*.html web/*.js web/*.css web/vendor/*.js web/vendor/*.css))
WEB_GEN := build/gen/web_assets.h
$(WEB_GEN): $(WEB_FILES) tools/embed.sh
	@mkdir -p $(dir $@)
	@echo "  GEN $@"
	@sh tools/embed.sh $@ web $(WEB_FILES)
$(BUILD)/obj/src/server/web.o: $(WEB_GEN)

tests: $(BIN) $(TEST_BINS)
bench: $(BENCH_BINS)

# The suite: release build, then the same tests under ASan+UBSan, then a
# bounded fuzz run.  tests/run.sh prints the closing "N passed, N failed".
test:
	$(MAKE) tests
	$(MAKE) SAN=1 tests
	$(MAKE) fuzz
	bash tests/run.sh

FUZZ_CC ?= clang
FUZZ_SRCS := $(sort $(wildcard fuzz/fuzz_*.c))
FUZZ_BINS := $(FUZZ_SRCS:fuzz/%.c=build/fuzz/%)
FUZZ_LIB_SRCS := $(LIB_SRCS)
fuzz: $(FUZZ_BINS)
build/fuzz/%: fuzz/%.c $(FUZZ_LIB_SRCS) $(wildcard src/*/*.h) include/hearth.h $(WEB_GEN)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(WARN) $(DEFS) $(INCS) -O1 -g -fsanitize=fuzzer,address,undefined \
	    -fno-sanitize-recover=undefined -o $@ $< $(FUZZ_LIB_SRCS) $(LIBS)

# Compile-only check of the CUDA backend (PTX, no GPU needed), and of the C
# side built with it, so neither rots in builds without CUDA.
cuda-check:
	@mkdir -p build/cuda-check
	$(NVCC) $(NVCC_FLAGS) -arch=compute_90 -c src/cuda/forward.cu -o build/cuda-check/forward.o
	$(CC) $(WARN) $(DEFS) -DHEARTH_CUDA $(INCS) -fsyntax-only src/model/device.c

FORMAT_SRCS = $(shell git ls-files '*.c' '*.h' 2>/dev/null)
format:
	clang-format -i $(FORMAT_SRCS)
format-check:
	clang-format --dry-run -Werror $(FORMAT_SRCS)

clean:
	rm -rf build

-include $(LIB_OBJS:.o=.d) $(CLI_OBJS:.o=.d) $(TEST_SRCS:%.c=$(BUILD)/obj/%.d)
