# aigate — build, test, run.  See README.md.

CC      ?= cc
PREFIX  ?= /usr/local
PKGS    := libevent libevent_openssl libevent_pthreads openssl libconfig zlib krb5-gssapi krb5 ldap \
           hiredis jansson
# Debian packages: DEB_PKGS build and run the proxy (`make deps`, `make run`); DEB_TEST_PKGS
# are needed only by `make test` (`make test-deps`).
DEB_PKGS := build-essential pkg-config libevent-dev libssl-dev libconfig-dev zlib1g-dev \
            libcrypt-dev openssl libkrb5-dev libldap-dev libhiredis-dev libjansson-dev
DEB_TEST_PKGS := check nginx-light curl python3 chromium fonts-noto-cjk clang libclang-rt-14-dev \
            python3-websockets krb5-kdc krb5-admin-server krb5-user slapd ldap-utils haproxy \
            redis-server rsyslog logrotate systemd util-linux gzip
# node and npm for t_browser's playwright-core: Debian's, unless both are there already
# (NodeSource's nodejs brings its own npm, which Debian's npm would conflict with).
DEB_TEST_PKGS += $(if $(shell command -v node >/dev/null && command -v npm >/dev/null && echo y),,nodejs npm)

WARN    := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wformat=2 -Wvla
CFLAGS  ?= -O2 -g
CFLAGS  += -std=c11 -D_GNU_SOURCE $(WARN) -Werror -fstack-protector-strong -fPIE -Iinclude \
           $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
HARDEN  := -D_FORTIFY_SOURCE=2
LDFLAGS += -pie -Wl,-z,relro,-z,now
LDLIBS  += $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lcrypt -lpthread -lm
CHECK_LIBS := $(shell pkg-config --libs check 2>/dev/null)
SAN     := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

SRCS    := proxy/main.c $(wildcard proxy/*/*.c)
HDRS    := $(wildcard include/aigate/*/*.h)
LIBSRCS := $(filter-out proxy/main.c,$(SRCS))
# The dashboard's page, script and style, compiled in by proxy/admin/dash_assets.S (.incbin).
ASSETS  := $(wildcard proxy/admin/dashboard/*)
LIBOBJS := $(patsubst proxy/%.c,%.o,$(LIBSRCS)) admin/dash_assets.o
UNITS   := $(patsubst tests/unit/%.c,%,$(wildcard tests/unit/test_*.c))
FUZZERS := $(patsubst tests/fuzz/%.c,%,$(wildcard tests/fuzz/fuzz_*.c))

all: build/aigate

# ---- release build ---------------------------------------------------------
build/obj/%.o: proxy/%.c $(HDRS)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(HARDEN) -c -o $@ $<
build/obj/admin/dash_assets.o: proxy/admin/dash_assets.S $(ASSETS)
	@mkdir -p $(@D)
	$(CC) -c -o $@ $<
build/libaigate.a: $(addprefix build/obj/,$(LIBOBJS))
	$(AR) rcs $@ $^
build/aigate: build/obj/main.o build/libaigate.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
# Each suite is linked with the one main() in tests/unit/runner.c, which calls NAME_suite().
UNIT_MAIN = tests/unit/runner.c -DUNIT_SUITE=$(patsubst test_%,%,$*)_suite
build/unit/%: tests/unit/%.c tests/unit/runner.c $(wildcard tests/unit/*.h) build/libaigate.a | build/unit
	$(CC) $(CFLAGS) $(HARDEN) $(LDFLAGS) -o $@ $< $(UNIT_MAIN) build/libaigate.a $(CHECK_LIBS) $(LDLIBS)

# ---- sanitizer build (make test runs everything against it too) -------------
build/asan/obj/%.o: proxy/%.c $(HDRS)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(SAN) -c -o $@ $<
build/asan/obj/admin/dash_assets.o: proxy/admin/dash_assets.S $(ASSETS)
	@mkdir -p $(@D)
	$(CC) -c -o $@ $<
build/asan/libaigate.a: $(addprefix build/asan/obj/,$(LIBOBJS))
	$(AR) rcs $@ $^
build/asan/aigate: build/asan/obj/main.o build/asan/libaigate.a
	$(CC) $(SAN) $(LDFLAGS) -o $@ $^ $(LDLIBS)
build/asan/unit/%: tests/unit/%.c tests/unit/runner.c $(wildcard tests/unit/*.h) build/asan/libaigate.a | build/asan/unit
	$(CC) $(CFLAGS) $(SAN) $(LDFLAGS) -o $@ $< $(UNIT_MAIN) build/asan/libaigate.a $(CHECK_LIBS) $(LDLIBS)

# ---- libFuzzer targets (clang; tests/fuzz/fuzz_NAME.c, corpora in tests/fuzz/) -------
FUZZ_CC     := clang
FUZZ_CFLAGS := -std=c11 -D_GNU_SOURCE $(WARN) -Werror -O1 -g -Iinclude \
               $(shell pkg-config --cflags $(PKGS) 2>/dev/null) \
               -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_SECONDS ?= 600
build/fuzz/obj/%.o: proxy/%.c $(HDRS)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c -o $@ $<
build/fuzz/obj/admin/dash_assets.o: proxy/admin/dash_assets.S $(ASSETS)
	@mkdir -p $(@D)
	$(FUZZ_CC) -c -o $@ $<
build/fuzz/libaigate.a: $(addprefix build/fuzz/obj/,$(LIBOBJS))
	$(AR) rcs $@ $^
build/fuzz/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz.h build/fuzz/libaigate.a
	$(FUZZ_CC) $(FUZZ_CFLAGS) -DFUZZ_RULES_DIR='"$(CURDIR)/rules"' -fsanitize=fuzzer -o $@ $< \
	  build/fuzz/libaigate.a $(LDLIBS)

build/unit build/asan/unit build/e2e build/asan/e2e:
	mkdir -p $@

# ---- e2e drivers: C programs linked against the library (tests/e2e/dirparts.c, ackstore_driver.c)
build/e2e/%: tests/e2e/%.c build/libaigate.a | build/e2e
	$(CC) $(CFLAGS) $(HARDEN) $(LDFLAGS) -o $@ $< build/libaigate.a $(LDLIBS)
build/asan/e2e/%: tests/e2e/%.c build/asan/libaigate.a | build/asan/e2e
	$(CC) $(CFLAGS) $(SAN) $(LDFLAGS) -o $@ $< build/asan/libaigate.a $(LDLIBS)
E2E_DRIVERS := dirparts ackstore_driver

# ---- tests ------------------------------------------------------------------
unit: dev-ca $(addprefix build/unit/,$(UNITS)) $(addprefix build/asan/unit/,$(UNITS))
	@set -e; for t in $(UNITS); do \
	  echo "== unit $$t"; build/unit/$$t; \
	  echo "== unit $$t (asan+ubsan)"; CK_TIMEOUT_MULTIPLIER=10 \
	    ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 build/asan/unit/$$t; \
	done

e2e: build/aigate build/asan/aigate $(addprefix build/e2e/,$(E2E_DRIVERS)) \
     $(addprefix build/asan/e2e/,$(E2E_DRIVERS))
	AIGATE=$(CURDIR)/build/asan/aigate bash tests/e2e/run.sh

# Every target runs its corpus and past crashes once (regression inputs; no fuzzing).
fuzz-replay: fuzz
	@set -e; for t in $(FUZZERS); do n=$${t#fuzz_}; \
	  echo "== fuzz replay $$n"; \
	  build/fuzz/$$t -runs=0 $$(ls -d tests/fuzz/corpus/$$n tests/fuzz/crashes/$$n 2>/dev/null) \
	    2>build/fuzz/$$t.replay.log || { cat build/fuzz/$$t.replay.log; exit 1; }; \
	  grep -h "INITED\|DONE" build/fuzz/$$t.replay.log | tail -1; \
	done

fuzz: $(addprefix build/fuzz/,$(FUZZERS))

# Fuzz each target for FUZZ_SECONDS (nice'd, one at a time); new inputs go to build/fuzz/corpus/,
# then those that add coverage are merged into tests/fuzz/corpus/.  A crash leaves
# build/fuzz/crash-* (see README.md, Tests); the other targets still run.
fuzz-run: fuzz
	@failed=""; for t in $(FUZZERS); do n=$${t#fuzz_}; \
	  mkdir -p build/fuzz/corpus/$$n tests/fuzz/corpus/$$n; echo "== fuzz $$n ($(FUZZ_SECONDS) s)"; \
	  nice -n 15 build/fuzz/$$t -max_total_time=$(FUZZ_SECONDS) -timeout=10 \
	    -artifact_prefix=build/fuzz/$$n- build/fuzz/corpus/$$n tests/fuzz/corpus/$$n \
	    $$(ls -d tests/fuzz/crashes/$$n 2>/dev/null) || failed="$$failed $$n"; \
	  nice -n 15 build/fuzz/$$t -merge=1 tests/fuzz/corpus/$$n build/fuzz/corpus/$$n 2>/dev/null; \
	done; [ -z "$$failed" ] || { echo "fuzz-run: findings in:$$failed (build/fuzz/*-crash-*)"; exit 1; }

# The same warnings must hold under clang (compile only).
clang-check:
	@for f in $(SRCS) $(wildcard tests/unit/test_*.c) tests/unit/runner.c \
	    $(patsubst %,tests/e2e/%.c,$(E2E_DRIVERS)); do \
	  clang $(filter-out -fstack-protector-strong,$(CFLAGS)) $(HARDEN) -DUNIT_SUITE=unit_suite \
	    -fsyntax-only $$f || exit 1; \
	done; echo "clang: warning-clean"

test: deps test-deps
	$(MAKE) clang-check
	$(MAKE) unit
	$(MAKE) fuzz-replay
	$(MAKE) e2e

# ---- benchmark (contrib/bench/README.md; needs squid tinyproxy privoxy wrk nginx-light) ----
bench: build/aigate
	bash contrib/bench/bench.sh

bench-profile: build/aigate
	bash contrib/bench/bench.sh profile
# TLS interception against Squid ssl_bump and mitmproxy (contrib/bench/README.md, "intercept.sh").
bench-intercept: build/aigate
	bash contrib/bench/intercept.sh

# The micro-benchmarks of contrib/bench/ (rules_bench.c, tls_bench.c), linked against the library.
build/%_bench: contrib/bench/%_bench.c build/libaigate.a
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< build/libaigate.a $(LDLIBS)
bench-tools: build/rules_bench build/tls_bench

# ---- dependencies -----------------------------------------------------------
# apt_install PACKAGES: apt-get install those of PACKAGES not installed yet.  Non-interactive:
# slapd and krb5-config ask debconf questions whose defaults are fine (the tests start
# their own servers).  sudo resets the environment, hence env.
define apt_install
	@if ! command -v dpkg-query >/dev/null; then \
	  echo "$@: not Debian; install the equivalents of: $(1)"; exit 0; fi; \
	have=" $$(dpkg-query -W -f='$${db:Status-Status} $${Package}\n' $(1) 2>/dev/null | \
	  awk '$$1 == "installed" { printf "%s ", $$2 }') "; \
	missing=""; for p in $(1); do \
	  case "$$have" in *" $$p "*) ;; *) missing="$$missing $$p" ;; esac; done; \
	if [ -z "$$missing" ]; then echo "$@: all present"; exit 0; fi; \
	echo "$@: installing$$missing"; \
	SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	$$SUDO apt-get update -qq && \
	$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing
endef

deps:
	$(call apt_install,$(DEB_PKGS))

test-deps: deps
	$(call apt_install,$(DEB_TEST_PKGS))

# ---- run ----------------------------------------------------------------------
# The development interception CA the shipped config names (keys are git-ignored).
dev-ca: build/aigate
	@if [ ! -e certs/ca.key ] && [ ! -e certs/ca.pem ]; then \
	  build/aigate --gen-ca certs && \
	  echo "Development CA created: certs/ca.pem. Trust it in your browser to see pages inside HTTPS (certs/README.md)."; \
	fi

run: deps
	$(MAKE) dev-ca
	build/aigate -f -c rules/aigate.conf

# ---- install ------------------------------------------------------------------
# make install [PREFIX=/usr/local] [DESTDIR=staging root]: the binary, README, the systemd
# unit (under $(PREFIX)/lib/systemd/system, pointing at $(PREFIX)/bin/aigate), the logrotate
# snippet, and /etc/aigate: the shipped catalog, policy and pages, aigate.conf with the audit
# log in /var/log/aigate and keys and acknowledgements in /var/lib/aigate (the unit's
# LogsDirectory= and StateDirectory=; the in-tree rules/aigate.conf keeps relative paths for
# `make run`), and a users.htpasswd WITHOUT users: the sample passwords never leave the
# tree.  Files already in /etc/aigate are the operator's and stay; a differing new version
# goes beside them as FILE.dist.  Without DESTDIR it also creates the aigate system user and
# gives its group read access to users.htpasswd and certs/; a staged install leaves that
# to the package's scripts.
UNITDIR ?= $(PREFIX)/lib/systemd/system
DOCDIR  ?= $(PREFIX)/share/doc/aigate
ETC     := $(DESTDIR)/etc/aigate
# The installed aigate.conf: rules/aigate.conf with these values replaced (install checks
# that each replacement happened).
INSTALL_CONF_SED := \
	-e 's\#"\.\./certs/\#"certs/\#' \
	-e 's\#state_file = "acks\.state"\#state_file = "/var/lib/aigate/acks.state"\#' \
	-e 's\#secret_file = "ack\.secret"\#secret_file = "/var/lib/aigate/ack.secret"\#' \
	-e 's\#path = "audit\.jsonl"\#path = "/var/log/aigate/audit.jsonl"\#' \
	-e 's\#chain_key_file = "audit\.key"\#chain_key_file = "/var/lib/aigate/audit.key"\#' \
	-e 's\#rotate_bytes = [0-9]*\#rotate_bytes = 0\#' \
	-e 's|^\# The sample users\.htpasswd .*|\# users.htpasswd is installed without users: add them as its comment says.|'
INSTALL_CONF_HAS := "certs/ca.pem" "/var/lib/aigate/acks.state" "/var/lib/aigate/ack.secret" \
	"/var/log/aigate/audit.jsonl" "/var/lib/aigate/audit.key" "rotate_bytes = 0;"

install: build/aigate
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(UNITDIR) $(DESTDIR)$(DOCDIR) \
	  $(DESTDIR)/etc/logrotate.d $(ETC)/pages build/install
	install -d -m 0750 $(ETC)/certs
	install -m 0755 build/aigate $(DESTDIR)$(PREFIX)/bin/aigate
	install -m 0644 README.md $(DESTDIR)$(DOCDIR)/README.md
	sed -e 's#/usr/local/bin/aigate#$(PREFIX)/bin/aigate#g' \
	  -e 's#/usr/local/share/doc/aigate#$(DOCDIR)#g' contrib/systemd/aigate.service \
	  > build/install/aigate.service
	install -m 0644 build/install/aigate.service $(DESTDIR)$(UNITDIR)/aigate.service
	install -m 0644 contrib/logrotate/aigate $(DESTDIR)/etc/logrotate.d/aigate
	sed $(INSTALL_CONF_SED) rules/aigate.conf > build/install/aigate.conf
	@for s in $(INSTALL_CONF_HAS); do grep -qF "$$s" build/install/aigate.conf || \
	  { echo "install: rules/aigate.conf changed, $$s not set: fix INSTALL_CONF_SED" >&2; exit 1; }; \
	done
	@keep() { if [ ! -e "$$2" ]; then install -m 0644 "$$1" "$$2"; \
	  elif ! cmp -s "$$1" "$$2"; then install -m 0644 "$$1" "$$2.dist"; \
	    echo "install: kept your $$2; the new version is $$2.dist"; fi; }; \
	keep build/install/aigate.conf $(ETC)/aigate.conf; \
	keep rules/services.conf $(ETC)/services.conf; \
	keep rules/policy.conf $(ETC)/policy.conf; \
	keep rules/ai-unlisted.txt $(ETC)/ai-unlisted.txt; \
	for f in rules/pages/*; do keep $$f $(ETC)/pages/$${f##*/}; done
	@if [ ! -e $(ETC)/users.htpasswd ]; then \
	  install -m 0640 contrib/systemd/users.htpasswd $(ETC)/users.htpasswd; \
	elif grep -v '^#' rules/users.htpasswd | grep -qxFf - $(ETC)/users.htpasswd; then \
	  echo "install: WARNING: $(ETC)/users.htpasswd holds the public sample passwords" \
	    "(alice, bob, carol): remove those lines" >&2; \
	fi
	@if [ -z "$(DESTDIR)" ]; then \
	  getent passwd aigate >/dev/null || \
	    useradd --system --home-dir /var/lib/aigate --no-create-home \
	      --shell "$$(command -v nologin || echo /usr/sbin/nologin)" --comment "aigate proxy" \
	      $$(getent group aigate >/dev/null && echo "--gid aigate" || echo "--user-group") \
	      aigate || exit 1; \
	  chgrp aigate $(ETC)/users.htpasswd $(ETC)/certs || exit 1; \
	  if [ -d /run/systemd/system ]; then systemctl daemon-reload; fi; \
	  echo "aigate installed.  Before systemctl enable --now aigate:"; \
	else \
	  echo "aigate staged in $(DESTDIR).  The package must create the aigate system user and"; \
	  echo "chgrp aigate /etc/aigate/users.htpasswd /etc/aigate/certs; then, on the host:"; \
	fi; \
	echo "  1. users: /etc/aigate/users.htpasswd has none (its comment says how to add them);"; \
	echo "     the names in aigate.conf's groups are examples"; \
	echo "  2. the interception CA: aigate --gen-ca /etc/aigate/certs, then"; \
	echo "     chown aigate /etc/aigate/certs/ca.key (aigate wants its key mode 0600)"; \
	echo "  3. /etc/aigate/aigate.conf (listen, client_networks, groups), policy.conf"; \
	echo "  4. aigate -t -c /etc/aigate/aigate.conf"

format:
	clang-format -i $(SRCS) $(HDRS) tests/unit/*.c

clean:
	rm -rf build

.PHONY: all unit e2e test clang-check fuzz fuzz-run fuzz-replay deps test-deps dev-ca run install format clean bench bench-profile bench-intercept bench-tools
.SECONDARY:
