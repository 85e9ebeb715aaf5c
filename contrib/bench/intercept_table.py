#!/usr/bin/env python3
"""Turn the raw lines of contrib/bench/intercept.sh into its table.

intercept_table.py RAW_FILE

A raw line is "ROUND VARIANT SCENARIO key=value ...".  Each cell is the
median over rounds; in parentheses the median over rounds of the ratio to the
direct figure of the same round.  The "aigate vs X" columns are medians of
per-round factors, oriented so that > 1 means aigate did better (more per
second, or less CPU time / latency).  Then the interception checks.
"""
import statistics
import sys
from collections import defaultdict

PEERS = ["aigate", "squid-bump", "squid-bumpall", "mitmproxy"]
ROWS = [  # label, scenario, key, unit, higher is better, has a direct figure
    ("new connections, full handshake", "conn_full", "rate", "conns/s", True, True),
    ("  proxy CPU per connection", "conn_full", "cpu_us_per_op", "µs", False, False),
    ("new connections, resumption offered", "conn_resume", "rate", "conns/s", True, True),
    ("  share resumed (client side)", "conn_resume", "resumed_share", "%", True, True),
    ("  proxy CPU per connection", "conn_resume", "cpu_us_per_op", "µs", False, False),
    ("kept-alive GETs of 1 KiB", "keepalive", "rate", "req/s", True, True),
    ("  proxy CPU per request", "keepalive", "cpu_us_per_op", "µs", False, False),
    ("100 MiB download", "download_100m", "MBps", "MB/s", True, True),
    ("  proxy CPU per 100 MiB", "download_100m", "cpu_s_per_100m", "s", False, False),
    ("first connection to an uncached name", "first_conn", "first_ms", "ms", False, True),
    ("  second connection to that name", "first_conn", "second_ms", "ms", False, True),
]


def load(path):
    data = defaultdict(dict)  # (variant, scenario) -> {round: {key: value}}
    checks = defaultdict(dict)  # variant -> {round: line}
    header = []
    with open(path) as f:
        for line in f:
            if line.startswith("#"):
                if line.startswith("# ") and not line[2:3].isdigit():
                    header.append(line.rstrip())
                continue
            parts = line.split()
            if len(parts) < 3:
                continue
            rnd, variant, scen = parts[:3]
            if scen == "check":
                checks[variant][rnd] = " ".join(parts[3:])
                continue
            kv = {}
            for p in parts[3:]:
                k, _, v = p.partition("=")
                try:
                    kv[k] = float(v)
                except ValueError:
                    pass
            if scen == "conn_resume" and kv.get("ok"):
                kv["resumed_share"] = 100.0 * kv.get("resumed", 0) / kv["ok"]
            data[(variant, scen)][rnd] = kv
    return header, data, checks


def values(data, variant, scen, key):
    out = {}
    for r, kv in data.get((variant, scen), {}).items():
        if key in kv and not kv.get("failed") and (key not in ("rate", "MBps") or kv[key] > 0):
            out[r] = kv[key]
    return out


def med(xs):
    xs = list(xs)
    return statistics.median(xs) if xs else None


def fmt(x, unit):
    if x is None:
        return "NA"
    if unit in ("ms", "s"):
        return f"{x:.2f}"
    return f"{x:.0f}" if abs(x) >= 10 else f"{x:.1f}"


def main():
    header, data, checks = load(sys.argv[1])
    variants = [p for p in PEERS if any(v == p for v, _ in data) or p in checks]
    cols = ["direct"] + variants
    others = [p for p in variants if p != "aigate"] if "aigate" in variants else []
    for h in header:
        print(h)
    print()
    print("| scenario | unit | " + " | ".join(cols) + "".join(f" | aigate vs {o}" for o in others) + " |")
    print("|---|---|" + "---|" * (len(cols) + len(others)))
    for label, scen, key, unit, higher, has_direct in ROWS:
        cells = []
        direct = values(data, "direct", scen, key)
        for c in cols:
            v = values(data, c, scen, key)
            if c == "direct" and not has_direct:
                cells.append("")
                continue
            m = med(v.values())
            cell = fmt(m, unit)
            if c != "direct" and has_direct and unit != "%" and m is not None:
                rr = med(v[r] / direct[r] for r in v if r in direct and direct[r])
                if rr is not None:
                    cell += f" ({rr * 100:.0f}%)" if higher else f" (x{rr:.1f})"
            cells.append(cell)
        a = values(data, "aigate", scen, key)
        for o in others:
            b = values(data, o, scen, key)
            if unit == "%":
                cells.append("")
                continue
            f = med((a[r] / b[r] if higher else b[r] / a[r]) for r in a if r in b and a[r] and b[r])
            cells.append("NA" if f is None else f"{f:.2f}")
        print(f"| {label} | {unit} | " + " | ".join(cells) + " |")
    print()
    print("In parentheses: per-second figures as a share of direct TLS, latencies as a multiple of it "
          "(medians of per-round ratios).  aigate vs X: > 1 means aigate did better.")
    print()
    print("Interception checks (per round): leaf issued by the proxy's own CA, a client trusting only the "
          "origin's CA refused, 1 KiB and 100 MiB bodies byte for byte:")
    for v in variants:
        for r, line in sorted(checks.get(v, {}).items()):
            print(f"- {v}, round {r}: {line}")
    bad = []
    for (v, scen), rounds in sorted(data.items()):
        for r, kv in sorted(rounds.items()):
            if kv.get("errors") or kv.get("failed"):
                bad.append(f"{v} {scen} round {r}: errors={kv.get('errors', 0):.0f} failed={kv.get('failed', 0):.0f}")
    if bad:
        print()
        print("Client errors (failed exchanges are not counted in the rates):")
        for b in bad:
            print(f"- {b}")
    missing = [f"{v} {s} round {r}" for (v, s), rounds in sorted(data.items()) for r, kv in rounds.items() if not kv]
    if missing:
        print()
        print("No figure (NA): " + ", ".join(missing))


if __name__ == "__main__":
    main()
