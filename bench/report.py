#!/usr/bin/env python3
"""Renders bench/sync.sh's measurements as markdown: prints it and writes it to a file
(keeping the file's other sections, such as bench/lambda.sh's, after it).

  report.py RESULTS.tsv META.env OUT.md
"""

import csv
import statistics
import sys

TOOLS = [
    ("uploader", "uploader"),
    ("aws", "aws s3 sync"),
    ("rclone", "rclone sync"),
    ("rclone_checksum", "rclone sync --checksum"),
    ("s3cmd", "s3cmd sync"),
]
SCENARIOS = [
    ("first", "first deploy (empty bucket)"),
    ("noop", "no-op redeploy"),
    ("change", "1% changed"),
    ("fresh", "fresh checkout (all mtimes new, 1% changed)"),
]


FLOORS = [
    ("floor_put", "raw upload"),
    ("floor_hash", "hashing"),
    ("floor_get", "one request"),
]


def load(results_path, meta_path):
    with open(results_path, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    meta = {}
    with open(meta_path) as f:
        for line in f:
            if "=" in line:
                k, v = line.rstrip("\n").split("=", 1)
                meta[k] = v
    return rows, meta


def fmt_secs(r, timeout):
    if r is None:
        return "–"
    if r["status"] == "timeout":
        return f">{timeout}s"
    if r["status"] == "fail":
        return f"fail ({float(r['seconds']):.1f}s)"
    return f"{float(r['seconds']):.2f}"


def fmt_reqs(r):
    if r is None:
        return "–"
    n = f"{int(r['requests']):,}"
    return n if r["status"] == "ok" else f"({n})"


def factor(cells, scen, size, other, goal, timeout):
    """`other` time / uploader time, with the verdict against `goal`."""
    u = cells.get((size, scen, "uploader"))
    o = cells.get((size, scen, other))
    name = dict(TOOLS)[other]
    if u is None or o is None:
        return None
    if u["status"] != "ok":
        return f"uploader {u['status']} — no factor", False
    us = float(u["seconds"])
    if o["status"] == "timeout":
        f = float(timeout) / us
        return f"**>{f:.1f}×** ({name} >{timeout}s vs uploader {us:.2f}s)", f >= goal
    if o["status"] != "ok":
        return f"n/a ({name} failed)", None
    os_ = float(o["seconds"])
    f = os_ / us
    return f"**{f:.1f}×** ({name} {os_:.2f}s vs uploader {us:.2f}s)", f >= goal


def verdict(ok):
    return "met" if ok else ("not measurable" if ok is None else "**MISSED**")


def collapse(rows):
    """One row per (size, scenario, tool): the median of its runs' seconds when every
    run succeeded (else the first run that did not), the first run's requests, and
    every run's seconds in `runs`."""
    groups = {}
    for r in rows:
        groups.setdefault((r["size"], r["scenario"], r["tool"]), []).append(r)
    cells = {}
    for key, runs in groups.items():
        bad = [r for r in runs if r["status"] != "ok"]
        cell = dict(bad[0] if bad else runs[0])
        if not bad:
            cell["seconds"] = f"{statistics.median(float(r['seconds']) for r in runs):.3f}"
        cell["runs"] = runs
        cells[key] = cell
    return cells


def fmt_runs(cell):
    """`0.31 (0.29 / 0.31 / 0.40)`: the median and every run, when there were several."""
    if cell is None:
        return "–"
    runs = cell["runs"]
    if cell["status"] != "ok":
        return fmt_secs(cell, "?")
    med = float(cell["seconds"])
    if len(runs) == 1:
        return f"{med:.3f}"
    each = " / ".join(f"{float(r['seconds']):.3f}" for r in runs)
    return f"{med:.3f} ({each})"


def render(rows, meta):
    timeout = meta.get("timeout", "600")
    cells = collapse(rows)
    sizes = []
    for r in rows:
        if r["size"] not in sizes:
            sizes.append(r["size"])
    tools = [(t, label) for t, label in TOOLS if any(r["tool"] == t for r in rows)]
    reps = meta.get("reps", "1")

    out = []
    out.append("# Sync benchmark: uploader vs aws s3 sync, rclone, s3cmd on local s3s-fs")
    out.append("")
    out.append(
        f"Run {meta.get('date', '?')} by `bench/sync.sh` on {meta.get('nproc', '?')} cores "
        f"({meta.get('cpu', '?')}), memory {meta.get('mem', '?')}, kernel {meta.get('kernel', '?')}; "
        f"load average {meta.get('load_start', '?')} at the start, {meta.get('load_end', '?')} at the end "
        "(the machine is shared, so timings carry some noise)."
    )
    out.append(f"Uploader: the release build of {meta.get('bin_built', '?')} from the working tree; "
               f"HEAD at run time {meta.get('commit', '?')}.")
    out.append("")
    out.append("Seconds are wall time of the whole command, the median of its runs (uploader and floors: "
               f"{reps} runs per cell; peers: {meta.get('peer_reps', '1')} for no-op and 1% changed, "
               f"{meta.get('peer_first_reps', '1')} for the first deploy, 1 for the fresh checkout); requests "
               "are HTTP requests the server received during the first run. A value in parentheses belongs "
               "to a run that did not succeed.")
    out.append("")
    header = "| scenario | files |" + "".join(f" {label} s | req |" for _, label in tools)
    out.append(header)
    out.append("|" + " --- |" * (2 + 2 * len(tools)))
    for scen, slabel in SCENARIOS:
        for size in sizes:
            line = f"| {slabel} | {int(size):,} |"
            for t, _ in tools:
                r = cells.get((size, scen, t))
                line += f" {fmt_secs(r, timeout)} | {fmt_reqs(r)} |"
            out.append(line)
    out.append("")

    floors = [f for f, _ in FLOORS if any(r["tool"] == f for r in rows)]
    if floors:
        out.extend(render_floors(cells, sizes))

    out.append("## Goals")
    out.append("")
    out.append("Each ratio is of medians measured in this run.")
    out.append("")
    for size in sizes:
        for line in floor_goals(cells, size):
            out.append(line)
    goals = [
        ("noop", "aws", 20, "no-op redeploy ≥ 20× faster than aws s3 sync"),
        ("noop", "rclone", 10, "no-op redeploy ≥ 10× faster than rclone sync"),
        ("change", "aws", 10, "1% changed ≥ 10× faster than aws s3 sync"),
        ("first", "aws", 3, "first deploy ≥ 3× faster than aws s3 sync"),
    ]
    for scen, other, goal, text in goals:
        for size in sizes:
            res = factor(cells, scen, size, other, goal, timeout)
            if res is None:
                continue
            desc, ok = res
            out.append(f"- {text}, {int(size):,} files: {desc} — {verdict(ok)}")
    if meta.get("rss_kb"):
        kb = int(meta["rss_kb"])
        mib = kb / 1024
        ok = mib <= 64 and meta.get("rss_rc") == "0"
        out.append(
            f"- peak RSS ≤ 64 MiB, first deploy of 1 GiB (64 files × 16 MiB): **{mib:.1f} MiB** "
            f"(Maximum resident set size {kb} kB; {meta.get('rss_seconds')}s, "
            f"{int(meta.get('rss_requests') or 0):,} requests: {meta.get('rss_methods')}; exit {meta.get('rss_rc')}) — {verdict(ok)}"
        )
        if meta.get("rss_rc") != "0":
            out.append(f"  - uploader error: `{meta.get('rss_error')}`")
    out.append("")

    out.append("## Requests by method, and what each run did (first run of each cell)")
    out.append("")
    out.append("| files | scenario | tool | status | requests by method | 4xx/5xx | notes |")
    out.append("| --- | --- | --- | --- | --- | --- | --- |")
    for size in sizes:
        for scen, _ in SCENARIOS:
            for t, label in tools:
                r = cells.get((size, scen, t))
                if r is None:
                    continue
                r = r["runs"][0]
                status = r["status"] if r["status"] == "ok" else f"**{r['status']}** (exit {r['rc']})"
                note = (r["note"] or "").replace("|", "\\|")
                out.append(f"| {int(size):,} | {scen} | {label} | {status} | {r['methods'] or '–'} | {r['errors']} | {note} |")
    out.append("")

    out.append("## Observations")
    out.append("")
    obs = []
    s3cmd_fails = [r for r in rows if r["tool"] == "s3cmd" and r["status"] == "fail"]
    if s3cmd_fails:
        etag = any("ETag" in (r["note"] or "") for r in s3cmd_fails)
        obs.append(
            f"- s3cmd failed in {len(s3cmd_fails)} run(s) ({', '.join(sorted({r['scenario'] for r in s3cmd_fails}))})"
            + (": it crashes with `KeyError: 'ETag'` as soon as the bucket is not empty. s3s-fs 0.14.1 lists "
               "objects without an `<ETag>` (its ListObjects/ListObjectsV2 fill in key, size and last-modified "
               "only), and s3cmd 2.3.0 reads the ETag of every listed object unconditionally. This is an "
               "s3s-fs/s3cmd incompatibility, not a measurement of s3cmd against AWS S3; only its first deploy "
               "into an empty bucket is comparable." if etag else ".")
        )
    rc_heads = [r for r in rows if r["tool"] == "rclone_checksum" and r["scenario"] == "noop" and "HEAD" in (r["methods"] or "")]
    if rc_heads:
        obs.append(
            "- `rclone sync --checksum` sends a HEAD per object even on a no-op here, because s3s-fs listings "
            "carry no ETag for it to compare; against AWS S3 (ETags in the listing) it would need only the "
            "listings. Plain `rclone sync` sends a HEAD per object on any S3, to read the mtime it stores in "
            "object metadata."
        )
    rc_fresh = [r for r in rows if r["tool"] == "rclone" and r["scenario"] == "fresh" and "PUT-copy" in (r["methods"] or "")]
    if rc_fresh:
        obs.append(
            "- `rclone sync` on the fresh checkout: sizes match but mtimes differ, so it compares MD5 (the ETag "
            "from its HEAD) and, where they match, rewrites the object's stored mtime with a server-side "
            "CopyObject (`PUT-copy` above: no bytes uploaded); only the changed 1% are uploaded. It still sends "
            "one request per object, plus the HEADs. `aws s3 sync` re-uploads every file whose mtime is newer."
        )
    up_noop = [r for r in rows if r["tool"] == "uploader" and r["scenario"] == "noop" and r["status"] == "ok"]
    if up_noop:
        reqs = sorted({r["requests"] for r in up_noop})
        obs.append(
            f"- the uploader's no-op made {' / '.join(reqs)} request(s): it reads its own manifest and compares "
            "content hashes (SHA-256 of every local file, which it computes on each run); it does not list the "
            "bucket, so objects changed behind its back are only found with `--verify`. Its first deploy also "
            "writes its records (`_uploader/…`, lock, manifest, history) and `config.json`; a change run first "
            "preserves the objects it overwrites (server-side copies), hence a few more requests than files (`PUT-copy`)."
        )
    obs.append(
        "- rclone 1.60 refuses to start while `AWS_CA_BUNDLE` is set (`LoadCustomCABundleError: unable to load "
        "custom CA bundle, HTTPClient's transport unsupported type`); the script unsets it, nothing here uses TLS."
    )
    obs.append(
        "- the server logs every request at debug level (that is how requests are counted); the cost is the "
        "same per request for every tool."
    )
    out.extend(obs)
    out.append("")

    out.append("## Set-up")
    out.append("")
    for size in sizes:
        if meta.get(f"stats_{size}"):
            out.append(f"- data set {int(size):,}: {meta[f'stats_{size}']} (1–4 KiB each, pages in sections, "
                       "blog posts by year/month, content-hashed js/css/svg, json shards); every mtime pinned "
                       "to 2024-01-01 at generation")
    out.append("- `change`: 1% of the files (every 100th in sorted order) rewritten in place with new content of "
               "a different size, so their mtime is newer; all other files untouched")
    out.append("- `fresh`: another, disjoint 1% rewritten the same way, then every file's mtime set to now, "
               "as a fresh CI checkout does")
    out.append("- one s3s-fs server on 127.0.0.1 for everything; every tool and data set in its own bucket; "
               "scenarios run in order (first, noop, change, fresh), every tool per scenario; the server's "
               f"files on {meta.get('server_fs', 'the disk (ext4)')}")
    out.append(f"- versions: {meta.get('v_uploader')}; {meta.get('v_aws')}; {meta.get('v_rclone')}; "
               f"{meta.get('v_s3cmd')}; {meta.get('v_s3s')}")
    out.append("- commands (default concurrency everywhere: uploader 32, aws-cli 10, rclone 4 transfers + 8 "
               "checkers, s3cmd 1):")
    out.append("  - `uploader --config FILE --stage benchN --dist DIR --output json` with `AWS_ENDPOINT_URL`")
    out.append("  - `aws --endpoint-url URL s3 sync DIR s3://BUCKET --delete --only-show-errors` (size + mtime)")
    out.append("  - `rclone sync DIR bench:BUCKET` with an env-configured s3 remote (provider Other, "
               "force_path_style=true); compares size + modtime, the modtime read by a HEAD per object")
    out.append("  - `rclone sync --checksum DIR bench:BUCKET` (size + MD5)")
    out.append("  - `s3cmd -c CFG sync --delete-removed --no-progress DIR/ s3://BUCKET/` (path style, http, "
               "signature v4; size + MD5 from the listing)")
    out.append("- requests counted by the server itself: s3s-fs runs with `RUST_LOG=s3s::service=debug`, which "
               "logs one `req:` event per HTTP request received; the log is emptied before each run and its "
               "`req:` events counted and grouped by method afterwards (the 4xx/5xx column counts `resp:` "
               "events with such a status)")
    out.append(f"- each run is cut after {timeout}s (`timeout`), shown as `>{timeout}s`")
    out.append("")
    return "\n".join(out)


def med(cells, size, scen, tool):
    c = cells.get((size, scen, tool))
    if c is None or c["status"] != "ok":
        return None
    return float(c["seconds"])


def render_floors(cells, sizes):
    """The uploader against the floors: what the work alone costs on the same server."""
    out = ["## The uploader against its floors", ""]
    out.append(
        "Floors (`uploader/examples/floors.rs`, same SDK and crates, same run, same server and data): "
        "**raw upload** PUTs every file once, 32 in flight, no hashing, no manifest, no ordering, into an "
        "empty bucket; **hashing** walks the data set and SHA-256-hashes every file on every core; **one "
        "request** is one GET of the uploader's manifest, SDK set-up included. Every figure is the median "
        "of its runs (all runs in parentheses); each is a whole process, start-up included."
    )
    out.append("")
    out.append("| scenario | files | uploader s | floor | floor s | uploader ÷ floor |")
    out.append("| --- | --- | --- | --- | --- | --- |")
    # The first deploy against the raw upload; no-op and 1% changed against hashing
    # (their uploads, if any, are a few dozen small files), one request shown apart.
    rows = [
        ("first", "floor_put", "raw upload"),
        ("noop", "floor_hash", "hashing"),
        ("noop", "floor_get", "one request"),
        ("change", "floor_hash", "hashing"),
    ]
    for size in sizes:
        for scen, floor, flabel in rows:
            slabel = dict(SCENARIOS)[scen]
            u = med(cells, size, scen, "uploader")
            f = med(cells, size, scen, floor)
            line = f"| {slabel} | {int(size):,} | {fmt_runs(cells.get((size, scen, 'uploader')))} |"
            line += f" {flabel} | {fmt_runs(cells.get((size, scen, floor)))} |"
            line += f" **{u / f:.2f}×** |" if u and f and floor != "floor_get" else " – |"
            out.append(line)
    out.append("")
    return out


def floor_goals(cells, size):
    out = []
    u, put = med(cells, size, "first", "uploader"), med(cells, size, "first", "floor_put")
    if u and put:
        out.append(
            f"- first deploy ≤ 1.25 × the raw-upload floor, {int(size):,} files: **{u / put:.2f}×** "
            f"(uploader {u:.2f}s vs floor {put:.2f}s) — {verdict(u <= 1.25 * put)}"
        )
    u, hsh, get = (med(cells, size, "noop", t) for t in ("uploader", "floor_hash", "floor_get"))
    if u and hsh and get:
        bound = 1.5 * hsh + get
        out.append(
            f"- no-op ≤ 1.5 × the hashing floor + one request, {int(size):,} files: uploader **{u:.3f}s** vs "
            f"1.5 × {hsh:.3f}s + {get:.3f}s = {bound:.3f}s (**{u / hsh:.2f}×** hashing) — {verdict(u <= bound)}"
        )
    return out


# The sections `render` writes; any other `## ` section already in the output file
# (bench/lambda.sh's and bench/app.sh's results, notes written by hand) is kept after
# the new report instead of being lost.
OWN_SECTIONS = ("The uploader against its floors", "Goals", "Requests by method", "Observations", "Set-up")


def kept_sections(path):
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        return ""
    kept, keep = [], False
    for line in text.splitlines(keepends=True):
        if line.startswith("## "):
            keep = not line[3:].startswith(OWN_SECTIONS)
        elif line.startswith("# "):
            keep = False
        if keep:
            kept.append(line)
    return "".join(kept)


def main(argv):
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    rows, meta = load(argv[0], argv[1])
    md = render(rows, meta)
    kept = kept_sections(argv[2])
    with open(argv[2], "w") as f:
        f.write(md)
        if kept:
            f.write("\n" + kept)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
