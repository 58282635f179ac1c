#!/usr/bin/env python3
"""Reverse mode side by side (issue 14): veilfs --reverse against gocryptfs -reverse on the same plain tree.

    sudo python3 bench/reverse.py --build-dir build-release [--files 20000] [--runs 3]

For each run and each filesystem (interleaved, the order rotated per run): a fresh copy of one plain tree
(--files files in 100-file directories, sizes 1 B .. 64 KiB, fixed seed), the reverse volume created, its view
mounted, caches dropped, then timed:
  full         rsync -a VIEW/ DEST/ into an empty DEST;
  incremental  after 1% of the files had 4 KiB rewritten in place (and their mtime moved on, as time would),
               rsync -a --stats VIEW/ DEST/ again: rsync's own count of the regular files it transferred must
               equal the files changed (the view is deterministic), and is reported.
Writes bench/results/<timestamp>-reverse/results.md (medians, veilfs's ratio to gocryptfs) and results.csv.
Standard library only; root for drop_caches.
"""
import argparse
import csv
import datetime as dt
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

PASSWORD = "veilfs-bench-password"  # benchmark volumes only


def log(msg):
    print(f"[{dt.datetime.now():%H:%M:%S}] {msg}", flush=True)


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, text=True, **kw)


def drop_caches():
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def make_tree(root, nfiles, seed=20261204):
    rng = random.Random(seed)
    for i in range(nfiles):
        d = root / f"d{i // 100:04d}"
        if i % 100 == 0:
            d.mkdir(parents=True)
        size = min(65536, int(rng.lognormvariate(8, 1.5)) + 1)
        (d / f"file-{i:06d}.dat").write_bytes(rng.randbytes(size))


def changed_files(root, nfiles, seed=7):
    rng = random.Random(seed)
    picks = sorted(rng.sample(range(nfiles), max(1, nfiles // 100)))
    return [root / f"d{i // 100:04d}" / f"file-{i:06d}.dat" for i in picks]


def modify(paths):
    for p in paths:
        data = bytearray(p.read_bytes())
        off = len(data) // 2
        chunk = os.urandom(min(4096, len(data) - off)) if len(data) > off else b""
        with open(p, "r+b") as f:
            f.seek(off)
            f.write(chunk or b"x")
        st = p.stat()
        os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 10 * 10**9))  # rsync compares whole seconds


def mounted(path):
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == str(path) for line in f)


class Reverse:
    def __init__(self, name, build):
        self.name, self.build = name, build

    def init(self, plain, passfile):
        if self.name == "veilfs":
            run([str(self.build / "keytool/veilkey"), "init", "--reverse", str(plain), "--passfile", str(passfile),
                 "--no-recovery-code", "--kdf-memory", "65536", "--kdf-ops", "1"], stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL)
        else:
            run(["gocryptfs", "-init", "-reverse", "-q", "-scryptn", "10", "-passfile", str(passfile), str(plain)],
                stdout=subprocess.DEVNULL)

    def mount(self, plain, mnt, passfile):
        if self.name == "veilfs":
            run([str(self.build / "veilfs"), "--reverse", "--passfile", str(passfile), str(plain), str(mnt)])
        else:
            run(["gocryptfs", "-reverse", "-q", "-passfile", str(passfile), str(plain), str(mnt)])
        deadline = time.monotonic() + 60
        while not mounted(mnt):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: the view did not appear")
            time.sleep(0.05)

    def unmount(self, mnt):
        for _ in range(50):
            if subprocess.run(["fusermount3", "-u", str(mnt)]).returncode == 0:
                return
            time.sleep(0.1)
        subprocess.run(["umount", "-l", str(mnt)])


def rsync(view, dest):
    t0 = time.monotonic()
    r = run(["rsync", "-a", "--stats", f"{view}/", f"{dest}/"], stdout=subprocess.PIPE)
    took = time.monotonic() - t0
    m = re.search(r"Number of regular files transferred: ([\d,]+)", r.stdout)
    return took, int(m.group(1).replace(",", "")) if m else -1


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build-dir", required=True)
    ap.add_argument("--files", type=int, default=20000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--workdir", default="/var/tmp/veilfs-bench-reverse")
    ap.add_argument("--results", default=str(Path(__file__).resolve().parent / "results"))
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/reverse.py must run as root (drop_caches)")
    build = Path(a.build_dir).resolve()
    names = ["veilfs"] + (["gocryptfs"] if shutil.which("gocryptfs") else [])
    if "gocryptfs" not in names:
        print("!!! gocryptfs is not installed: the comparison row is SKIPPED (apt-get install gocryptfs)", flush=True)
    when = dt.datetime.now(dt.timezone.utc)
    outdir = Path(a.results) / (when.strftime("%Y%m%dT%H%M%SZ") + "-reverse")
    outdir.mkdir(parents=True)
    work = Path(a.workdir) / when.strftime("%Y%m%dT%H%M%SZ")
    pristine = work / "pristine"
    pristine.mkdir(parents=True)
    passfile = work / "passfile"
    passfile.write_text(PASSWORD + "\n")
    log(f"plain tree: {a.files} files")
    make_tree(pristine, a.files)
    tree_mb = sum(p.stat().st_size for p in pristine.rglob("*") if p.is_file()) / 1e6
    rows = []
    try:
        for run_no in range(1, a.runs + 1):
            k = (run_no - 1) % len(names)
            for name in names[k:] + names[:k]:
                fs = Reverse(name, build)
                base = work / name
                shutil.rmtree(base, ignore_errors=True)
                plain, view, dest = base / "plain", base / "view", base / "dest"
                for d in (view, dest):
                    d.mkdir(parents=True)
                run(["cp", "-a", str(pristine), str(plain)])
                fs.init(plain, passfile)
                fs.mount(plain, view, passfile)
                try:
                    drop_caches()
                    full, full_n = rsync(view, dest)
                    changed = changed_files(plain, a.files)
                    modify(changed)
                    drop_caches()
                    incr, incr_n = rsync(view, dest)
                finally:
                    fs.unmount(view)
                ok = incr_n == len(changed)
                log(f"run {run_no} {name}: full {full:.2f} s ({full_n} files), incremental {incr:.2f} s "
                    f"({incr_n} files transferred, {len(changed)} changed{'' if ok else ' - MISMATCH'})")
                rows.append({"run": run_no, "fs": name, "full_s": round(full, 3), "full_files": full_n,
                             "incremental_s": round(incr, 3), "incremental_files": incr_n, "changed": len(changed)})
                shutil.rmtree(base, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    with open(outdir / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    med = {n: {k: statistics.median(r[k] for r in rows if r["fs"] == n) for k in ("full_s", "incremental_s")}
           for n in names}
    lines = [f"# Reverse mode: rsync of the encrypted view ({when:%Y-%m-%d %H:%M UTC})", "",
             f"Plain tree: {a.files} files, {tree_mb:.0f} MB; {a.runs} runs per filesystem, interleaved; medians.",
             "Incremental: after 1% of the files changed (4 KiB each, in place). `files` is rsync's "
             "\"Number of regular files transferred\" of each run.", "",
             "| | full rsync (s) | incremental rsync (s) | files sent (full / incremental, changed) |", "|---|---|---|---|"]
    for n in names:
        sent = ", ".join(f"{r['full_files']} / {r['incremental_files']} ({r['changed']})" for r in rows if r["fs"] == n)
        lines.append(f"| {n} | {med[n]['full_s']:.2f} | {med[n]['incremental_s']:.2f} | {sent} |")
    if "gocryptfs" in med:
        lines += ["", f"veilfs / gocryptfs time: full {med['veilfs']['full_s'] / med['gocryptfs']['full_s']:.2f}, "
                      f"incremental {med['veilfs']['incremental_s'] / med['gocryptfs']['incremental_s']:.2f} "
                      "(below 1: veilfs is faster)"]
    bad = [r for r in rows if r["incremental_files"] != r["changed"]]
    lines += ["", "Every incremental run sent exactly the changed files." if not bad else
              f"!!! {len(bad)} incremental run(s) sent other than the changed files: see results.csv"]
    (outdir / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines), flush=True)
    log(f"results: {outdir}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
