#!/usr/bin/env python3
"""Test data for bench/sync.sh: a static site of small files, and its changes.

  gen_site.py gen DIR N          N files of 1-4 KiB in nested folders, deterministic
                                 content, every mtime pinned to 2024-01-01T00:00:00Z
  gen_site.py modify DIR OFFSET  rewrite 1% of the files (sorted index % 100 == OFFSET)
                                 in place with new content of a different size; their
                                 mtime becomes "now", every other file is left alone
  gen_site.py touch DIR          set every file's mtime to now (a fresh CI checkout)
  gen_site.py big DIR COUNT MIB  COUNT files of MIB MiB of random bytes
  gen_site.py stats DIR          "<files> files, <dirs> folders, <bytes> bytes"

Only the standard library; no network; every loop is bounded by its arguments.
"""

import hashlib
import os
import random
import sys

PINNED_MTIME = 1704067200  # 2024-01-01T00:00:00Z
WORDS = (
    "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor "
    "incididunt ut labore et dolore magna aliqua deploy bucket release stage cache "
    "asset bundle router signal component todo filter render"
).split()


def short_hash(seed: str, n: int) -> str:
    return hashlib.sha1(seed.encode()).hexdigest()[:n]


def name_for(i: int, n: int) -> str:
    """A site-like path for file i of n: pages in sections, blog posts by year/month,
    content-hashed js/css/svg, json data shards."""
    if i == 0:
        return "index.html"
    if i == 1:
        return "404.html"
    kind = i % 20
    h = short_hash(f"file-{i}", 10)
    if kind < 8:  # 40%: documentation pages, ~100 per section
        sections = max(1, n // 250)
        return f"docs/section-{(i // 20) % sections:02d}/page-{i:05d}.html"
    if kind < 12:  # 20%: blog posts by year and month
        return f"blog/{2015 + (i // 20) % 10}/{1 + (i // 200) % 12:02d}/post-{i:05d}.html"
    if kind < 15:  # 15%: hashed js chunks
        return f"assets/js/chunk-{h[:8]}.js"
    if kind == 15:  # 5%: hashed css
        return f"assets/css/{('app', 'vendor', 'print', 'theme')[i % 4]}-{h[:8]}.css"
    if kind < 18:  # 10%: hashed images in a few folders
        return f"img/{('icons', 'photos', 'logos', 'ui')[i % 4]}/{WORDS[i % len(WORDS)]}-{h}.svg"
    if kind == 18:  # 5%: flat pages
        return f"assets/page-{i:04d}.html"
    return f"data/{i % 16:x}/item-{i:05d}.json"  # 5%: data shards


def body(rng: random.Random, path: str, size: int) -> bytes:
    """About `size` bytes of text shaped like the file type, random enough to not dedupe."""
    parts = []
    if path.endswith(".html"):
        parts.append(f"<!doctype html><html><head><title>{path}</title></head><body>\n")
    elif path.endswith(".svg"):
        parts.append('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24">\n')
    elif path.endswith(".json"):
        parts.append('{"items": [\n')
    else:
        parts.append(f"/* {path} */\n")
    out = "".join(parts)
    while len(out) < size:
        words = " ".join(rng.choice(WORDS) for _ in range(8))
        out += f"<p>{words} {rng.getrandbits(64):016x}</p>\n"
    return out[:size].encode()


def gen(root: str, n: int) -> None:
    rng = random.Random(f"site-{n}")
    for i in range(n):
        path = name_for(i, n)
        full = os.path.join(root, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "wb") as f:
            f.write(body(rng, path, rng.randint(1024, 4096)))
        os.utime(full, (PINNED_MTIME, PINNED_MTIME))


def files(root: str) -> list:
    out = []
    for d, _, names in os.walk(root):
        for name in names:
            out.append(os.path.relpath(os.path.join(d, name), root))
    return sorted(out)


def modify(root: str, offset: int) -> None:
    rng = random.Random(f"modify-{offset}")
    changed = 0
    for i, rel in enumerate(files(root)):
        if i % 100 != offset:
            continue
        full = os.path.join(root, rel)
        old = os.path.getsize(full)
        new_size = old + 16 + rng.randint(0, 64)  # always a different size
        data = body(rng, rel, new_size)
        with open(full, "r+b") as f:  # in place: same inode, like a git checkout of a change
            f.write(data)
            f.truncate(len(data))
        changed += 1
    print(changed)


def touch(root: str) -> None:
    for rel in files(root):
        os.utime(os.path.join(root, rel), None)


def big(root: str, count: int, mib: int) -> None:
    os.makedirs(root, exist_ok=True)
    for i in range(count):
        with open(os.path.join(root, f"blob-{i:03d}.bin"), "wb") as f:
            for _ in range(mib):
                f.write(os.urandom(1 << 20))


def stats(root: str) -> None:
    n = size = 0
    dirs = set()
    for rel in files(root):
        n += 1
        size += os.path.getsize(os.path.join(root, rel))
        dirs.add(os.path.dirname(rel))
    print(f"{n} files, {len(dirs)} folders, {size} bytes")


def main(argv: list) -> int:
    if len(argv) >= 3 and argv[0] == "gen":
        gen(argv[1], int(argv[2]))
    elif len(argv) >= 3 and argv[0] == "modify":
        modify(argv[1], int(argv[2]))
    elif len(argv) >= 2 and argv[0] == "touch":
        touch(argv[1])
    elif len(argv) >= 4 and argv[0] == "big":
        big(argv[1], int(argv[2]), int(argv[3]))
    elif len(argv) >= 2 and argv[0] == "stats":
        stats(argv[1])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
