# spd.c build.
#   make            build/spd and build/libspd.a (CPU; CUDA sources too when nvcc is found)
#   make test       build and run the test suite (ends with "N passed, N failed")
#   make SAN=1      the same under AddressSanitizer and UBSan, in build-san/
#
# Files that include "core/real.h" are precision-generic: each is compiled
# twice, as float32 (functions suffixed _f32) and float64 (-DSPD_F64, _f64).

CC      ?= cc
NVCC    ?= nvcc
PKGS    := openblas libcjson yaml-0.1 libpng

ifeq ($(SAN),1)
BUILD   ?= build-san
SANFLAGS := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
OPT     ?= -O1
else
BUILD   ?= build
SANFLAGS :=
OPT     ?= -O2
endif

# The commit a binary is built from: the COMMIT file of an exported tree (git archive; it
# wins, since such a tree may sit inside another checkout), else git's.
GIT_COMMIT := $(shell if [ -f COMMIT ]; then cat COMMIT; \
              elif git rev-parse --short=12 HEAD >/dev/null 2>&1; then \
                echo $$(git rev-parse --short=12 HEAD)$$(git diff --quiet HEAD -- src || echo -dirty); \
              else echo unknown; fi)
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
# The reference must not reassociate or contract: no fast math, no FMA fusion.
CFLAGS  += -std=c11 $(OPT) -g -Wall -Wextra -Wno-unused-parameter -Wshadow -fno-fast-math -ffp-contract=off \
           -D_DEFAULT_SOURCE -Iinclude -Isrc $(PKG_CFLAGS) $(SANFLAGS) -MMD -MP -fopenmp
# OpenMP: the CI functions' elementwise and per-component loops split over the cores
# (split so that every value is summed in one order: results do not depend on it).
LDFLAGS += $(SANFLAGS) -fopenmp
LDLIBS  += $(PKG_LIBS) -lm -lpthread

ALL_SRC     := $(sort $(wildcard src/core/*.c src/ops/*.c src/models/*.c src/spd/*.c src/cli/*.c))
REAL_SRC    := $(shell grep -l '^\#include "core/real.h"' $(ALL_SRC) 2>/dev/null)
PLAIN_SRC   := $(filter-out $(REAL_SRC) src/cli/main.c src/core/device_none.c src/spd/dist_none.c,$(ALL_SRC))
LIB_OBJ     := $(PLAIN_SRC:%.c=$(BUILD)/obj/%.o) $(REAL_SRC:%.c=$(BUILD)/obj/f32/%.o) \
               $(REAL_SRC:%.c=$(BUILD)/obj/f64/%.o)
MAIN_OBJ    := $(BUILD)/obj/src/cli/main.o

# CUDA: built whenever nvcc is present (CI compiles it too, without a GPU). The
# precision-generic model code is compiled a third time against the CUDA ops
# (-DSPD_CUDA, suffix _cuda); src/ops/*.c have their twins in src/cuda/*.cu.
CUDA_SRC    := $(wildcard src/cuda/*.cu)
HAVE_NVCC   := $(shell command -v $(NVCC) >/dev/null 2>&1 && echo 1)
ifeq ($(HAVE_NVCC)$(if $(CUDA_SRC),1,),11)
CUDA_HOME   ?= $(patsubst %/bin/,%,$(dir $(shell command -v $(NVCC))))
# NCCL (spd train --gpus N, spd/dist.h): nccl.h and libnccl under NCCL_HOME
# (e.g. a torch wheel's site-packages/nvidia/nccl), the CUDA toolkit or
# /usr(/local); without them src/spd/dist_none.c refuses --gpus.
# The header and the library from the same place (the first that has both).
NCCL_DIRS   := $(NCCL_HOME) $(CUDA_HOME) /usr/local /usr
NCCL_FOUND  := $(firstword $(foreach d,$(NCCL_DIRS),$(if $(wildcard $(d)/include/nccl.h),\
                 $(foreach l,lib lib64 lib/x86_64-linux-gnu,$(if $(wildcard $(d)/$(l)/libnccl.so*),$(d)/include:$(d)/$(l))))))
NCCL_INC    := $(word 1,$(subst :, ,$(NCCL_FOUND)))
NCCL_LIBDIR := $(word 2,$(subst :, ,$(NCCL_FOUND)))
NCCL_LIBF   := $(notdir $(firstword $(wildcard $(NCCL_LIBDIR)/libnccl.so $(NCCL_LIBDIR)/libnccl.so.2)))
ifeq ($(if $(NCCL_INC),1)$(if $(NCCL_LIBF),1),11)
NVCCFLAGS   += -I$(NCCL_INC)
LDLIBS      += -L$(NCCL_LIBDIR) -Wl,-rpath,$(NCCL_LIBDIR) -l:$(NCCL_LIBF)
HAVE_NCCL   := 1
else
CUDA_SRC    := $(filter-out src/cuda/dist.cu,$(CUDA_SRC))
LIB_OBJ     += $(BUILD)/obj/src/spd/dist_none.o
endif
CUDA_OBJ    := $(CUDA_SRC:%.cu=$(BUILD)/obj/%.o) \
               $(patsubst %.c,$(BUILD)/obj/cuda/%.o,$(filter-out src/ops/%,$(REAL_SRC)))
NVCCFLAGS   += -O3 -std=c++17 -Iinclude -Isrc -DSPD_CUDA -gencode=arch=compute_90,code=sm_90 \
               -gencode=arch=compute_90a,code=sm_90a -lineinfo -Xcompiler -Wall
LDLIBS      += -L$(CUDA_HOME)/lib64 -lcublasLt -lcublas -lcudart -lstdc++
CFLAGS      += -DSPD_HAVE_CUDA
else
LIB_OBJ     += $(BUILD)/obj/src/core/device_none.o $(BUILD)/obj/src/spd/dist_none.o
endif

TEST_SRC    := $(sort $(wildcard tests/test_*.c))
TEST_BIN    := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
# GPU tests: built by `make gpu-tests` (CUDA builds only), run on a GPU by tests/run_gpu.sh.
GPU_TEST_BIN := $(patsubst tests/%.c,$(BUILD)/tests/%,$(wildcard tests/gpu/test_*.c))

.PHONY: all test run deps install-deps clean FORCE
all: deps $(BUILD)/spd $(TEST_BIN)

# The README's two commands: each installs missing Debian packages first, then
# builds in a fresh make (so pkg-config sees what was just installed).
run: install-deps
	@$(MAKE) --no-print-directory all
	bash scripts/run-default.sh

install-deps:
	@bash scripts/install-deps.sh

deps:
	@missing=""; for p in $(PKGS); do \
	  if pkg-config --exists $$p; then echo "found   $$p $$(pkg-config --modversion $$p)"; \
	  else echo "MISSING $$p"; missing="$$missing $$p"; fi; done; \
	if [ -n "$(HAVE_NVCC)" ]; then echo "found   nvcc ($(words $(CUDA_SRC)) CUDA sources)"; \
	else echo "missing nvcc: CPU build only"; fi; \
	if [ -n "$(HAVE_NCCL)" ]; then echo "found   NCCL ($(NCCL_LIBDIR)/$(NCCL_LIBF))"; \
	elif [ -n "$(HAVE_NVCC)" ]; then echo "missing NCCL: no spd train --gpus (set NCCL_HOME)"; fi; \
	if [ -n "$$missing" ]; then echo "install: apt-get install libopenblas-dev libcjson-dev libyaml-dev libpng-dev pkg-config" >&2; exit 1; fi

$(BUILD)/libspd.a: $(LIB_OBJ) $(CUDA_OBJ)
	@mkdir -p $(@D)
	@rm -f $@  # ar never drops members: a stale object would linger
	$(AR) rcs $@ $^

$(BUILD)/spd: $(MAIN_OBJ) $(BUILD)/libspd.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/obj/src/cli/build_info.o: src/cli/build_info.c FORCE
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -DSPD_GIT_COMMIT='"$(GIT_COMMIT)"' -c -o $@ $<

FORCE:

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/obj/f32/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/obj/f64/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -DSPD_F64 -c -o $@ $<

$(BUILD)/obj/cuda/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -DSPD_CUDA -c -o $@ $<

$(BUILD)/obj/%.o: %.cu
	@mkdir -p $(@D)
	$(NVCC) $(NVCCFLAGS) -MMD -MP -c -o $@ $<

# Kernels on Hopper's arch-specific instructions (wgmma) exist only as sm_90a code,
# so no plain sm_90 build of them can be picked on an H100.
$(BUILD)/obj/src/cuda/%_sm90.o: src/cuda/%_sm90.cu
	@mkdir -p $(@D)
	$(NVCC) $(filter-out -gencode=arch=compute_90%,$(NVCCFLAGS)) -gencode=arch=compute_90a,code=sm_90a \
	    -MMD -MP -c -o $@ $<

$(BUILD)/tests/%: tests/%.c $(BUILD)/libspd.a
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -Itests $(LDFLAGS) -o $@ $< $(BUILD)/libspd.a $(LDLIBS)

.PHONY: gpu-tests
ifdef CUDA_OBJ
gpu-tests: $(BUILD)/spd $(GPU_TEST_BIN)
else
gpu-tests:
	@echo "make gpu-tests: needs nvcc (this build has no CUDA)" >&2; exit 1
endif

test: install-deps
	@$(MAKE) --no-print-directory all
	BUILD=$(BUILD) bash tests/run.sh

clean:
	rm -rf build build-san

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
