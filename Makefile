# aigate — build, test, run.  See README.md.

CC      ?= cc
PREFIX  ?= /usr/local
PKGS    := libevent libevent_openssl libevent_pthreads openssl libconfig zlib
DEB_PKGS := build-essential pkg-config libevent-dev libssl-dev libconfig-dev zlib1g-dev check \
            libcrypt-dev nginx-light curl openssl python3 chromium fonts-noto-cjk clang

WARN    := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wformat=2 -Wvla
CFLAGS  ?= -O2 -g
CFLAGS  += -std=c11 -D_GNU_SOURCE $(WARN) -Werror -fstack-protector-strong -fPIE -Iinclude \
           $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
HARDEN  := -D_FORTIFY_SOURCE=2
LDFLAGS += -pie -Wl,-z,relro,-z,now
LDLIBS  += $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lcrypt -lpthread -lm
CHECK_LIBS := $(shell pkg-config --libs check 2>/dev/null)
SAN     := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

SRCS    := $(wildcard proxy/*.c)
LIBSRCS := $(filter-out proxy/main.c,$(SRCS))
UNITS   := $(patsubst tests/unit/%.c,%,$(wildcard tests/unit/test_*.c))

all: build/aigate

# ---- release build ---------------------------------------------------------
build/obj/%.o: proxy/%.c $(wildcard include/aigate/*.h) | build/obj
	$(CC) $(CFLAGS) $(HARDEN) -c -o $@ $<
build/libaigate.a: $(patsubst proxy/%.c,build/obj/%.o,$(LIBSRCS))
	$(AR) rcs $@ $^
build/aigate: build/obj/main.o build/libaigate.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
build/unit/%: tests/unit/%.c build/libaigate.a | build/unit
	$(CC) $(CFLAGS) $(HARDEN) $(LDFLAGS) -o $@ $< build/libaigate.a $(CHECK_LIBS) $(LDLIBS)

# ---- sanitizer build (make test runs everything against it too) -------------
build/asan/obj/%.o: proxy/%.c $(wildcard include/aigate/*.h) | build/asan/obj
	$(CC) $(CFLAGS) $(SAN) -c -o $@ $<
build/asan/libaigate.a: $(patsubst proxy/%.c,build/asan/obj/%.o,$(LIBSRCS))
	$(AR) rcs $@ $^
build/asan/aigate: build/asan/obj/main.o build/asan/libaigate.a
	$(CC) $(SAN) $(LDFLAGS) -o $@ $^ $(LDLIBS)
build/asan/unit/%: tests/unit/%.c build/asan/libaigate.a | build/asan/unit
	$(CC) $(CFLAGS) $(SAN) $(LDFLAGS) -o $@ $< build/asan/libaigate.a $(CHECK_LIBS) $(LDLIBS)

build/obj build/unit build/asan/obj build/asan/unit:
	mkdir -p $@

# ---- tests ------------------------------------------------------------------
unit: dev-ca $(addprefix build/unit/,$(UNITS)) $(addprefix build/asan/unit/,$(UNITS))
	@set -e; for t in $(UNITS); do \
	  echo "== unit $$t"; build/unit/$$t; \
	  echo "== unit $$t (asan+ubsan)"; CK_TIMEOUT_MULTIPLIER=10 \
	    ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 build/asan/unit/$$t; \
	done

e2e: build/aigate build/asan/aigate
	AIGATE=$(CURDIR)/build/asan/aigate bash tests/e2e/run.sh

# The same warnings must hold under clang (compile only).
clang-check:
	@for f in $(SRCS) $(wildcard tests/unit/test_*.c); do \
	  clang $(filter-out -fstack-protector-strong,$(CFLAGS)) $(HARDEN) -fsyntax-only $$f || exit 1; \
	done; echo "clang: warning-clean"

test: deps-check
	$(MAKE) clang-check
	$(MAKE) unit
	$(MAKE) e2e

# ---- benchmark (contrib/bench/README.md; needs squid tinyproxy privoxy wrk nginx-light) ----
bench: build/aigate
	bash contrib/bench/bench.sh

bench-profile: build/aigate
	bash contrib/bench/bench.sh profile

# ---- dependencies -----------------------------------------------------------
deps:
	@missing=""; for p in $(DEB_PKGS); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	else echo "deps: all present"; fi

deps-check:
	@pkg-config --exists $(PKGS) check && command -v nginx >/dev/null && command -v curl >/dev/null \
	  && command -v chromium >/dev/null && command -v clang >/dev/null \
	  || $(MAKE) deps

# ---- run / install ----------------------------------------------------------
# The development interception CA the shipped config names (keys are git-ignored).
dev-ca: build/aigate
	@if [ ! -e certs/ca.key ] && [ ! -e certs/ca.pem ]; then \
	  build/aigate --gen-ca certs && \
	  echo "Development CA created: certs/ca.pem. Trust it in your browser to see pages inside HTTPS (certs/README.md)."; \
	fi

run: deps-check
	$(MAKE) dev-ca
	build/aigate -f -c rules/aigate.conf

# Installs the binary and the rules under /etc/aigate (the CA goes to /etc/aigate/certs:
# make one with `aigate --gen-ca /etc/aigate/certs`).
install: build/aigate
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)/etc/aigate/pages $(DESTDIR)/etc/aigate/certs
	install -m 0755 build/aigate $(DESTDIR)$(PREFIX)/bin/aigate
	install -m 0644 rules/services.conf rules/policy.conf $(DESTDIR)/etc/aigate/
	sed 's#"\.\./certs/#"certs/#' rules/aigate.conf > $(DESTDIR)/etc/aigate/aigate.conf
	install -m 0640 rules/users.htpasswd $(DESTDIR)/etc/aigate/
	install -m 0644 rules/pages/* $(DESTDIR)/etc/aigate/pages/

format:
	clang-format -i proxy/*.c include/aigate/*.h tests/unit/*.c

clean:
	rm -rf build

.PHONY: all unit e2e test clang-check deps deps-check dev-ca run install format clean bench bench-profile
.SECONDARY:
