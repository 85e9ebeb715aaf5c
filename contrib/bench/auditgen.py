#!/usr/bin/env python3
"""Write a synthetic audit log for the audit-index benchmark (contrib/bench/dashboard.sh).

usage: auditgen.py LINES DAYS OUT

LINES lines spread evenly over the DAYS days before now, in time order, in the
writer's field order (include/aigate/audit/audit.h).  The mix: 2,000 users in
aigate's own format, half the requests to catalogued AI services (30 of them),
the rest ordinary web traffic (service null); actions allow 80 %, warn 6 %,
ack 5 %, block 6 %, auth-fail 2 %, error 1 %; one AI request in 100 carries a
"dlp" field.  The "chain" field is random hex: the index does not check it
(aigate --verify-log would fail on this file, by design).
"""
import os
import random
import sys
import time

SERVICES = [
    ("chatgpt", "chat"), ("claude", "chat"), ("gemini", "chat"), ("deepseek", "chat"),
    ("copilot", "chat"), ("perplexity", "search"), ("grok", "chat"), ("meta-ai", "chat"),
    ("openai-api", "api"), ("anthropic-api", "api"), ("gemini-api", "api"),
    ("github-copilot", "code"), ("kimi", "chat"), ("qwen", "chat"), ("ernie", "chat"),
    ("doubao", "chat"), ("zhipu", "chat"), ("minimax", "chat"), ("baichuan", "chat"),
    ("spark", "chat"), ("yuanbao", "chat"), ("sensenova", "chat"), ("kling", "image"),
    ("sora", "image"), ("notebooklm", "agent"), ("microsoft-designer", "image"),
    ("azure-openai", "api"), ("perplexity-api", "api"), ("grok-api", "api"),
    ("deepseek-api", "api"),
]
ACTIONS = ["allow"] * 80 + ["warn"] * 6 + ["ack"] * 5 + ["block"] * 6 + ["auth-fail"] * 2 + ["error"]
RULES = {"allow": "allow-staff", "warn": "caution-chat", "ack": "caution-chat", "block": "ban-cn-ai",
         "auth-fail": None, "error": None}
STATUS = {"allow": 200, "warn": 403, "ack": 303, "block": 403, "auth-fail": 407, "error": 400}


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    lines, days, out = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
    rnd = random.Random(16)
    users = ['"u%04d"' % i for i in range(2000)]
    end = time.time()
    start = end - days * 86400
    step = (end - start) / max(lines, 1)
    hexd = "0123456789abcdef"
    chain = "".join(rnd.choice(hexd) for _ in range(64))
    with open(out, "w", buffering=1 << 20) as f:
        t = start
        for i in range(lines):
            t += step
            sec = int(t)
            ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + ".%03dZ" % int((t - sec) * 1000)
            act = ACTIONS[rnd.randrange(len(ACTIONS))]
            user = "null" if act == "auth-fail" else users[int(rnd.paretovariate(1.2) * 7) % 2000]
            if rnd.random() < 0.5:
                svc, cat = SERVICES[int(rnd.paretovariate(1.0)) % len(SERVICES)]
                svc, cat, host = '"%s"' % svc, '"%s"' % cat, '"%s.example"' % svc
                rule = RULES[act]
                dlp = ',"dlp":["email"]' if rnd.random() < 0.01 else ""
            else:
                svc = cat = "null"
                host = '"www%d.example.org"' % rnd.randrange(500)
                rule = None if act in ("allow", "auth-fail", "error") else RULES[act]
                dlp = ""
            rule = '"%s"' % rule if rule else "null"
            f.write('{"ts":"%s","id":"%032x","client":"10.20.%d.%d","user":%s,"method":"POST",'
                    '"scheme":"https","host":%s,"port":443,"path":"/backend-api/conversation",'
                    '"service":%s,"category":%s,"rule":%s,"action":"%s","status":%d,'
                    '"bytes_in":%d,"bytes_out":%d,"ms":%d,"tls":"intercept"%s,"chain":"%s"}\n'
                    % (ts, rnd.getrandbits(128), i % 250, i % 251, user, host, svc, cat, rule, act,
                       STATUS[act], rnd.randrange(200, 5000), rnd.randrange(300, 60000),
                       rnd.randrange(1, 900), dlp, chain))
    os.chmod(out, 0o640)


if __name__ == "__main__":
    main()
