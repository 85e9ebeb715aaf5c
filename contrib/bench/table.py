#!/usr/bin/env python3
"""Turn the raw lines of contrib/bench/bench.sh into its one table.

table.py RAW_FILE

A raw line is "ROUND VARIANT SCENARIO key=value ...".  Every cell is the
median over rounds; the figure in parentheses is the median over rounds of
the ratio to the direct (no proxy) figure of the same round, and the
aigate/peer columns are medians of the per-round ratios too, so a slow or
fast moment of the shared machine cancels out within a round.  Then the SPEC
section 8 targets, and any errors the load generators saw.
"""
import statistics
import sys
from collections import defaultdict

METRIC = {  # scenario -> (key, unit, higher is better)
    "rps_keepalive_1k": ("rps", "req/s", True),
    "rps_close_1k": ("rps", "req/s", True),
    "post_16k": ("rps", "req/s", True),
    "connect_tput_100m": ("MBps", "MB/s", True),
    "connect_rate": ("per_s", "tunnels/s", True),
    "intercept_keepalive": ("rps", "req/s", True),
    "intercept_close": ("rps", "req/s", True),
    "idle_rss": ("kib_per_conn", "KiB/conn", False),
}
PEERS = ["aigate", "squid", "tinyproxy", "privoxy"]
EXTRA = [  # (row label, variant, scenario)
    ("rps_keepalive_1k, audit off", "aigate-audit-off", "rps_keepalive_1k"),
    ("rps_close_1k, audit off", "aigate-audit-off", "rps_close_1k"),
    ("post_16k, audit off", "aigate-audit-off", "post_16k"),
    ("rps_keepalive_1k, 2 workers, CPUs 0-1", "aigate-w2", "rps_keepalive_1k"),
    ("rps_close_1k, 2 workers, CPUs 0-1", "aigate-w2", "rps_close_1k"),
    ("post_16k, 2 workers, CPUs 0-1", "aigate-w2", "post_16k"),
]


def load(path):
    data = defaultdict(dict)  # (variant, scenario) -> {round: {key: value}}
    header = []
    with open(path) as f:
        for line in f:
            if line.startswith("#"):
                header.append(line.rstrip())
                continue
            parts = line.split()
            if len(parts) < 3:
                continue
            kv = {}
            for p in parts[3:]:
                k, _, v = p.partition("=")
                try:
                    kv[k] = float(v)
                except ValueError:
                    pass
            data[(parts[1], parts[2])][parts[0]] = kv
    return header, data


def values(data, variant, scen):
    key = METRIC[scen][0]
    return {r: kv[key] for r, kv in data.get((variant, scen), {}).items() if key in kv}


def med(xs):
    xs = [x for x in xs if x == x]
    return statistics.median(xs) if xs else None


def ratio(data, a, b, scen):
    """Median over rounds of a/b within the same round."""
    va, vb = values(data, a, scen), values(data, b, scen)
    return med([va[r] / vb[r] for r in va if r in vb and vb[r]])


def fmt(x, digits=0):
    if x is None:
        return "-"
    return f"{x:.{digits}f}" if digits or abs(x) < 100 else f"{x:.0f}"


def cell(data, variant, scen):
    v = med(values(data, variant, scen).values())
    if v is None:
        return "-"
    digits = 2 if scen == "idle_rss" else 0
    r = ratio(data, variant, "direct", scen) if variant != "direct" else None
    return fmt(v, digits) + (f" ({r:.2f})" if r is not None else "")


def main():
    header, data = load(sys.argv[1])
    rows = [["scenario", "unit", "direct"] + PEERS + ["aigate/squid", "aigate/tinyproxy"]]
    for scen, (_, unit, _) in METRIC.items():
        row = [scen, unit, cell(data, "direct", scen)]
        row += [cell(data, p, scen) for p in PEERS]
        row += [fmt(ratio(data, "aigate", p, scen), 2) for p in ("squid", "tinyproxy")]
        rows.append(row)
    for label, variant, scen in EXTRA:
        row = [label, METRIC[scen][1], cell(data, "direct", scen), cell(data, variant, scen)]
        row += ["", "", "", "", ""]
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for line in header:
        print(line)
    print(f"median of {len(set(r for d in data.values() for r in d))} interleaved rounds; "
          "(x) = ratio to direct in the same round; idle_rss has no direct figure")
    for i, r in enumerate(rows):
        print("  ".join(c.ljust(w) if j < 2 else c.rjust(w) for j, (c, w) in enumerate(zip(r, widths))))
        if i == 0:
            print("  ".join("-" * w for w in widths))

    print("\nSPEC section 8 targets:")
    checks = [
        ("keep-alive req/s >= 2x tinyproxy", ratio(data, "aigate", "tinyproxy", "rps_keepalive_1k"), 2.0, True),
        ("keep-alive req/s >= 1.5x Squid", ratio(data, "aigate", "squid", "rps_keepalive_1k"), 1.5, True),
        ("CONNECT throughput >= 0.9x direct", ratio(data, "aigate", "direct", "connect_tput_100m"), 0.9, True),
        ("RSS per idle connection < 8 KiB", med(values(data, "aigate", "idle_rss").values()), 8.0, False),
    ]
    for name, got, bar, higher in checks:
        if got is None:
            print(f"  {name}: not measured")
            continue
        ok = got >= bar if higher else got < bar
        print(f"  {name}: {got:.2f} -> {'MET' if ok else 'NOT MET'}")
    for scen in ("rps_keepalive_1k", "rps_close_1k"):
        r = ratio(data, "aigate", "aigate-audit-off", scen)
        if r is not None:
            ok = abs(1 - r) < 0.10
            print(f"  audit on vs off < 10% apart ({scen}): on/off = {r:.2f} -> {'MET' if ok else 'NOT MET'}")
    for scen in ("rps_keepalive_1k", "rps_close_1k", "post_16k"):
        r = ratio(data, "aigate-w2", "aigate", scen)
        if r is not None:
            print(f"  (not a target) 2 workers on CPUs 0-1 / 1 worker on CPU 0 ({scen}): {r:.2f}")

    notes = []
    for (variant, scen), rounds in sorted(data.items()):
        for rnd, kv in sorted(rounds.items()):
            bad = {k: kv[k] for k in ("non2xx", "sock_errors", "failed") if kv.get(k)}
            if scen == "idle_rss" and kv.get("still_open", 0) < kv.get("opened", 0):
                bad["closed_idle"] = kv["opened"] - kv["still_open"]
            if scen.startswith("intercept") and kv.get("ok", 0) < kv.get("of", 0):
                bad["not_200"] = kv["of"] - kv["ok"]
            if bad:
                notes.append(f"  round {rnd} {variant} {scen}: "
                             + " ".join(f"{k}={v:.0f}" for k, v in bad.items()))
    if notes:
        print("\nerrors seen (not counted as requests):")
        print("\n".join(notes))


main()
