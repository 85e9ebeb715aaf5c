#!/usr/bin/env python3
"""Compare aigate's service catalog with v2fly/domain-list-community's AI lists.

Reads rules/services.conf and a local copy of v2fly's data/ folder (it fetches
nothing) and prints:

  - candidate additions: domains of the lists that no catalog host pattern
    covers, or covers only in part;
  - rules that cannot be compared with host patterns (regexp:, keyword:);
  - catalog hosts that are not in the lists (still the service's?);
  - "left-out:" notes of the catalog whose domain is no longer in the lists.

Domains the catalog records as reviewed and left out ("# left-out: DOMAIN
reason" lines) are not offered again.  Candidates are facts to check, not
hosts to paste: see README.md in this folder.

Python 3 standard library only.  Exit status 0 after a report, 2 on a
usage or input error.
"""

import argparse
import os
import re
import sys

DEFAULT_LISTS = ("category-ai-!cn", "category-ai-cn")
MAX_INCLUDE_DEPTH = 32
PROBE_LABEL = "zz-aigate-probe"


class InputError(Exception):
    """A file that cannot be read or parsed; the message names it."""


# ---- services.conf: the subset of libconfig the catalog uses ----------------

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<comment>\#[^\n]*|//[^\n]*|/\*.*?\*/)
  | (?P<include>@include[^\n]*)
  | (?P<string>"(?:[^"\\]|\\.)*")
  | (?P<number>[-+]?(?:0[xX][0-9a-fA-F]+|[0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?)L{0,2})
  | (?P<name>[A-Za-z*][-A-Za-z0-9_*]*)
  | (?P<punct>[=:;,(){}\[\]])
    """,
    re.VERBOSE | re.DOTALL,
)


def _tokens(text, path):
    pos, line = 0, 1
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise InputError("%s:%d: cannot read %r" % (path, line, text[pos : pos + 20]))
        kind = m.lastgroup
        value = m.group(kind)
        if kind == "include":
            raise InputError("%s:%d: @include is not supported here" % (path, line))
        if kind not in ("ws", "comment"):
            yield kind, value, line
        line += value.count("\n")
        pos = m.end()


class _Parser:
    def __init__(self, text, path):
        self.path = path
        self.toks = list(_tokens(text, path))
        self.i = 0

    def _peek(self):
        return self.toks[self.i] if self.i < len(self.toks) else (None, None, 0)

    def _take(self, want=None):
        tok = self._peek()
        if tok[0] is None or (want is not None and tok[1] != want):
            line = tok[2] or (self.toks[-1][2] if self.toks else 1)
            raise InputError("%s:%d: expected %s" % (self.path, line, want or "a value"))
        self.i += 1
        return tok

    def settings(self, end=None):
        out = {}
        while self._peek()[0] is not None and self._peek()[1] != end:
            kind, name, line = self._take()
            if kind != "name":
                raise InputError("%s:%d: expected a setting name" % (self.path, line))
            if self._peek()[1] not in ("=", ":"):
                raise InputError("%s:%d: expected '=' after %s" % (self.path, line, name))
            self._take()
            out[name] = self.value()
            if self._peek()[1] in (";", ","):
                self._take()
        return out

    def value(self):
        kind, tok, line = self._take()
        if kind == "string":
            parts = [tok]
            while self._peek()[0] == "string":  # adjacent strings concatenate
                parts.append(self._take()[1])
            return "".join(_unquote(p) for p in parts)
        if kind == "number":
            return tok
        if kind == "name" and tok.lower() in ("true", "false"):
            return tok.lower() == "true"
        if tok == "{":
            group = self.settings("}")
            self._take("}")
            group["__line__"] = line
            return group
        if tok in ("(", "["):
            close = ")" if tok == "(" else "]"
            items = []
            while self._peek()[1] != close:
                items.append(self.value())
                if self._peek()[1] == ",":
                    self._take()
                elif self._peek()[1] != close:
                    raise InputError("%s:%d: expected ',' or '%s'" % (self.path, line, close))
            self._take(close)
            return items
        raise InputError("%s:%d: unexpected %r" % (self.path, line, tok))


def _unquote(tok):
    return re.sub(r'\\(["\\])', r"\1", tok[1:-1])


LEFT_OUT = re.compile(r"^\s*#\s*left-out:\s*(\S+)\s*(.*?)\s*$")


def read_catalog(path):
    """Services, their host patterns, the version and the left-out notes."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise InputError("%s: %s" % (path, e.strerror)) from e
    root = _Parser(text, path).settings()
    services = root.get("services")
    if not isinstance(services, list):
        raise InputError("%s: no services = ( ... ) list" % path)
    catalog = []
    for s in services:
        if not isinstance(s, dict) or "id" not in s:
            raise InputError("%s: a service entry without an id" % path)
        hosts = s.get("hosts", [])
        hosts = [hosts] if isinstance(hosts, str) else hosts
        catalog.append({"id": s["id"], "hosts": [h.lower().rstrip(".") for h in hosts],
                        "line": s.get("__line__", 0), "paths": bool(s.get("paths"))})
    left_out = {}
    for line in text.splitlines():
        m = LEFT_OUT.match(line)
        if m:
            left_out[m.group(1).lower().rstrip(".")] = m.group(2)
    return catalog, root.get("catalog_version", ""), left_out


class Catalog:
    """Host lookup with the catalog's rules: exact beats wildcard, longest wins.

    Path-scoped entries (`paths`) own only some paths of their hosts, never a
    host as a whole, so they cover no list domain."""

    def __init__(self, services):
        self.exact, self.wild = {}, {}
        for s in services:
            if s.get("paths"):
                continue
            for h in s["hosts"]:
                if h.startswith("*."):
                    self.wild[h[2:]] = s["id"]
                else:
                    self.exact[h] = s["id"]

    def lookup(self, host):
        host = host.lower().rstrip(".")
        if host in self.exact:
            return self.exact[host]
        labels = host.split(".")
        for i in range(1, len(labels)):
            suffix = ".".join(labels[i:])
            if suffix in self.wild:
                return self.wild[suffix]
        return None

    def patterns_under(self, domain):
        """Catalog patterns naming domain or a host below it."""
        out = []
        for h, sid in list(self.exact.items()) + [("*." + d, s) for d, s in self.wild.items()]:
            bare = h[2:] if h.startswith("*.") else h
            if bare == domain or bare.endswith("." + domain):
                out.append("%s -> %s" % (h, sid))
        return sorted(out)


# ---- v2fly data files -----------------------------------------------------

RULE_KINDS = ("domain", "full", "keyword", "regexp")


def _parse_line(raw):
    """(kind, value, attrs) for a rule line, None for a blank or comment line."""
    line = raw.split("#", 1)[0].strip()
    if not line:
        return None
    fields = line.split()
    value, attrs = fields[0], [a[1:] for a in fields[1:] if a.startswith("@")]
    if value.startswith("include:"):
        return "include", value[len("include:") :], attrs
    kind, sep, rest = value.partition(":")
    if sep and kind in RULE_KINDS:
        return kind, rest if kind == "regexp" else rest.lower(), attrs
    if sep:
        return "unknown", value, attrs
    return "domain", value.lower(), attrs


def _keep(attrs, filters):
    for f in filters:
        if f.startswith("-"):
            if f[1:] in attrs:
                return False
        elif f not in attrs:
            return False
    return True


def read_lists(data_dir, names):
    """Every rule reachable from the named lists, following include: lines.

    Returns (rules, files): rules as dicts kind/value/attrs/source (the file
    that holds the line), files the set of list files read.
    """
    rules, files = [], set()

    def walk(name, filters, stack):
        if name in stack:
            raise InputError("include loop: %s" % " -> ".join(stack + [name]))
        if len(stack) >= MAX_INCLUDE_DEPTH:
            raise InputError("includes nested deeper than %d at %s" % (MAX_INCLUDE_DEPTH, name))
        path = os.path.join(data_dir, name)
        try:
            with open(path, encoding="utf-8") as f:
                lines = f.read().splitlines()
        except OSError as e:
            raise InputError("%s: %s" % (path, e.strerror)) from e
        files.add(name)
        for n, raw in enumerate(lines, 1):
            parsed = _parse_line(raw)
            if parsed is None:
                continue
            kind, value, attrs = parsed
            if kind == "include":
                walk(value, filters + attrs, stack + [name])
            elif _keep(attrs, filters):
                rules.append({"kind": kind, "value": value, "attrs": attrs,
                              "source": "%s:%d" % (name, n)})

    for name in names:
        walk(name, [], [])
    return rules, files


# ---- the comparison -------------------------------------------------------


def _under(host, domain):
    return host == domain or host.endswith("." + domain)


def _left_out(host, left_out):
    return any(_under(host, d) for d in left_out)


def compare(catalog_services, left_out, rules, with_ads):
    cat = Catalog(catalog_services)
    add, part, skipped, incomparable, ads = [], [], [], [], []
    domains, fulls = set(), set()
    for r in rules:
        v = r["value"]
        if "ads" in r["attrs"]:
            ads.append(r)
            if not with_ads:
                continue
        if r["kind"] in ("regexp", "keyword", "unknown"):
            incomparable.append(r)
            continue
        if r["kind"] == "domain":
            domains.add(v)
        else:
            fulls.add(v)
        if _left_out(v, left_out):
            skipped.append(r)
            continue
        here = cat.lookup(v)
        below = cat.lookup(PROBE_LABEL + "." + v) if r["kind"] == "domain" else here
        if here and below:
            continue
        if here or below:
            what = "bare domain not covered" if below else "subdomains not covered"
            part.append((r, "%s (%s)" % (what, here or below)))
            continue
        under = cat.patterns_under(v)
        add.append((r, "partly: " + ", ".join(under) if under else ""))

    not_listed = []
    for s in catalog_services:
        for h in s["hosts"]:
            bare = h[2:] if h.startswith("*.") else h
            if any(_under(bare, d) for d in domains) or bare in fulls:
                continue
            not_listed.append((s["id"] + (" (paths only)" if s.get("paths") else ""), h))

    listed = {r["value"] for r in rules if r["kind"] in ("domain", "full")}
    stale = sorted(d for d in left_out if not any(_under(x, d) or _under(d, x) for x in listed))
    conflicts = sorted((d, cat.lookup(d)) for d in left_out if cat.lookup(d))
    return add, part, skipped, incomparable, ads, not_listed, stale, conflicts


def _attrs(r):
    return " @" + " @".join(r["attrs"]) if r["attrs"] else ""


def report(out, args, services, version, left_out, rules, files):
    add, part, skipped, incomparable, ads, not_listed, stale, conflicts = compare(
        services, left_out, rules, args.with_ads)
    npat = sum(len(s["hosts"]) for s in services)
    w = out.write
    w("catalog: %s (%d services, %d host patterns, catalog_version %s)\n"
      % (args.catalog, len(services), npat, version or "none"))
    w("lists: %s in %s (%d files, %d rules)\n"
      % (", ".join(args.lists), args.data, len(files), len(rules)))

    w("\n== Candidate additions: list domains no catalog host covers (%d)\n" % len(add))
    for r, note in sorted(add, key=lambda x: x[0]["value"]):
        w("add     %-40s %s%s%s\n" % (r["value"] if r["kind"] == "domain" else "full:" + r["value"],
                                      r["source"], _attrs(r), "  " + note if note else ""))
    w("\n== Partly covered (%d)\n" % len(part))
    for r, note in sorted(part, key=lambda x: x[0]["value"]):
        w("part    %-40s %s%s  %s\n" % (r["value"], r["source"], _attrs(r), note))
    w("\n== Not comparable with host patterns (%d): check by hand\n" % len(incomparable))
    for r in incomparable:
        extra = ""
        if r["kind"] == "keyword":
            hits = sorted({h for s in services for h in s["hosts"] if r["value"] in h})
            extra = "  catalog hosts containing it: " + (", ".join(hits) if hits else "none")
        w("%-7s %-40s %s%s%s\n" % (r["kind"], r["value"], r["source"], _attrs(r), extra))
    w("\n== Catalog hosts not in the lists (%d): still the service's? "
      "(API hosts and services the lists miss are expected here)\n" % len(not_listed))
    for sid, h in not_listed:
        w("check   %-40s %s\n" % (h, sid))
    w("\n== left-out notes whose domain the lists no longer have (%d): delete them\n" % len(stale))
    for d in stale:
        w("stale   %s\n" % d)
    w("\n== left-out notes for domains the catalog lists anyway (%d): one of the two is wrong\n"
      % len(conflicts))
    for d, sid in conflicts:
        w("both    %-40s %s\n" % (d, sid))
    w("\nsummary: %d to add, %d partly covered, %d not comparable, %d catalog hosts to check, "
      "%d left out as reviewed, %d tracking (@ads) %s, %d stale notes, %d conflicts\n"
      % (len(add), len(part), len(incomparable), len(not_listed), len(skipped), len(ads),
         "compared" if args.with_ads else "skipped", len(stale), len(conflicts)))


def main(argv=None):
    ap = argparse.ArgumentParser(
        description="Compare aigate's services.conf with a local copy of v2fly's data/ folder.")
    ap.add_argument("data", help="v2fly domain-list-community data/ folder (a local copy)")
    ap.add_argument("--catalog", default="rules/services.conf",
                    help="the catalog to compare (default: %(default)s)")
    ap.add_argument("--lists", default=",".join(DEFAULT_LISTS),
                    help="comma-separated list names to start from (default: %(default)s)")
    ap.add_argument("--with-ads", action="store_true",
                    help="compare @ads (tracking) entries too instead of skipping them")
    args = ap.parse_args(argv)
    args.lists = [n for n in args.lists.split(",") if n]
    try:
        services, version, left_out = read_catalog(args.catalog)
        rules, files = read_lists(args.data, args.lists)
    except InputError as e:
        sys.stderr.write("compare.py: %s\n" % e)
        return 2
    report(sys.stdout, args, services, version, left_out, rules, files)
    return 0


if __name__ == "__main__":
    sys.exit(main())
