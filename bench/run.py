#!/usr/bin/env python3
"""Side-by-side benchmark of veilfs against the plain disk, a FUSE pass-through and the peers (issue 5).

Called by bench/run.sh, which installs the packages and builds the binaries first; see bench/README.md.
Standard library only. Must run as root (mounts, drop_caches, clear_refs).

Every filesystem gets a fresh backing directory under --workdir (same disk for all), is mounted, and runs the
same workloads; runs are interleaved (run 1 of every filesystem, then run 2, ...), each run in a rotated order.
Read workloads are preceded by unmount, `echo 3 > /proc/sys/vm/drop_caches` and remount (--quick: only the
drop_caches). Medians go to
results.md, every sample to results.csv, a chart to chart.png.
"""
import argparse
import csv
import datetime as dt
import json
import math
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

PASSWORD = "veilfs-bench-password"  # benchmark volumes only; never a real secret
MIB = 1 << 20

# name, unit, higher_is_better
WORKLOADS = [
    ("seqwrite", "MB/s", True),
    ("seqread", "MB/s", True),
    ("untar", "s", False),
    ("lsR", "s", False),
    ("readall", "s", False),
    ("rmrf", "s", False),
    ("randwrite", "IOPS", True),
    ("randread", "IOPS", True),
    ("create", "s", False),
    ("stat", "s", False),
    ("unlink", "s", False),
    ("sqlite", "tx/s", True),
    ("fsx", "ops/s", True),
]
UNIT = {w: u for w, u, _ in WORKLOADS}
HIGHER = {w: h for w, _, h in WORKLOADS}
PEERS = ["gocryptfs", "securefs", "cryfs", "encfs"]
VEIL = ["veilfs-aes256gcm", "veilfs-xchacha20poly1305"]
# The same volumes mounted by another build (--baseline-build): a before/after comparison in one run.
VEIL_BASE = [v + "@base" for v in VEIL]
# Mounted with --shared-storage (other writers of the cipher dir): what coherence costs.
VEIL_SHARED = ["veilfs-aes256gcm+shared"]
ALL_FS = ["plain", "passthrough"] + VEIL + VEIL_SHARED + VEIL_BASE + PEERS


def log(msg):
    print(f"[{dt.datetime.now():%H:%M:%S}] {msg}", flush=True)


def loud(msg):
    print(f"!!! {msg}", file=sys.stderr, flush=True)


def run(cmd, *, check=True, input=None, env=None, shell=False, timeout=None, stdout=subprocess.DEVNULL):
    r = subprocess.run(cmd, input=input, env=env, shell=shell, timeout=timeout, stdout=stdout,
                       stderr=subprocess.PIPE, text=True)
    if check and r.returncode != 0:
        what = cmd if isinstance(cmd, str) else " ".join(map(str, cmd))
        raise RuntimeError(f"{what}: exit {r.returncode}: {r.stderr.strip()[-500:]}")
    return r


def drop_caches():
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def mounted(path):
    want = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == want for line in f)


# ---------------------------------------------------------------- the daemon's CPU time and peak memory

def daemon_pid(mnt):
    """The process serving mnt: its command line names the mount point and it holds /dev/fuse open."""
    want = os.path.realpath(mnt)
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            args = (d / "cmdline").read_bytes().split(b"\0")
            if (d / "comm").read_text().strip().startswith("fusermount"):
                continue
            if not any(a and os.path.realpath(a.decode(errors="replace")) == want for a in args):
                continue
            if any(os.readlink(fd) == "/dev/fuse" for fd in (d / "fd").iterdir()):
                return int(d.name)
        except (OSError, ValueError):
            continue
    return None


def cpu_seconds(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime, all threads


def reset_peak_rss(pid):
    Path(f"/proc/{pid}/clear_refs").write_text("5\n")  # resets VmHWM to the current RSS


def peak_rss_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return None


# ---------------------------------------------------------------- filesystems

class Fs:
    fuse = True

    def __init__(self, name, root, tools):
        self.name, self.tools = name, tools
        self.back = root / name / "backing"
        self.mnt = root / name / "mnt"
        self.pid = None
        self.env = dict(os.environ)
        self.remount_policy = "all"

    def fresh(self):
        for p in (self.back, self.mnt):
            if p.exists():
                shutil.rmtree(p)
            p.mkdir(parents=True)

    def create(self):
        pass

    def mount_cmd(self):
        raise NotImplementedError

    def mount(self):
        cmd, stdin = self.mount_cmd()
        # The daemon inherits stdout/stderr: a pipe would keep us waiting for its EOF until it exits.
        logf = self.back.parent / "mount.log"
        with open(logf, "a") as lf:
            r = subprocess.run(cmd, input=stdin, env=self.env, timeout=180, stdout=lf, stderr=lf, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"{self.name}: mount failed (exit {r.returncode}): "
                               f"{logf.read_text(errors='replace').strip()[-500:]}")
        deadline = time.monotonic() + 120
        while not mounted(self.mnt):  # some daemons return before the mount is visible
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: mount did not appear")
            time.sleep(0.05)
        self.pid = daemon_pid(self.mnt)

    def unmount(self):
        if not mounted(self.mnt):
            return
        pid = self.pid
        for _ in range(50):
            if run(["fusermount3", "-u", str(self.mnt)], check=False).returncode == 0:
                break
            time.sleep(0.1)  # busy: a process of ours may still be closing a file
        else:
            loud(f"{self.name}: fusermount3 -u failed, lazy unmount")
            run(["umount", "-l", str(self.mnt)], check=False)
        # Wait for the daemon to finish writing back, so that the next filesystem starts on a quiet machine.
        deadline = time.monotonic() + 120
        while pid and Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            try:
                if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                    break
            except OSError:
                break
            time.sleep(0.05)
        self.pid = None

    def remount(self):
        self.unmount()
        drop_caches()
        self.mount()

    def cold(self, workload):
        """Before a read workload: unmount, drop caches, remount; or, as --remount says, only drop caches."""
        if self.remount_policy == "all" or (self.remount_policy == "seqread" and workload == "seqread"):
            self.remount()
        else:
            drop_caches()

    def stats(self):
        if not self.pid:
            return None
        try:
            return cpu_seconds(self.pid)
        except OSError:
            return None


class Plain(Fs):
    fuse = False

    def __init__(self, name, root, tools):
        super().__init__(name, root, tools)
        self.mnt = self.back

    def fresh(self):
        if self.back.exists():
            shutil.rmtree(self.back)
        self.back.mkdir(parents=True)

    def mount(self):
        pass

    def unmount(self):
        os.sync()

    def remount(self):
        drop_caches()


class Passthrough(Fs):
    def mount_cmd(self):
        return [self.tools["passthrough"], str(self.back), str(self.mnt)], None


class Veilfs(Fs):
    def __init__(self, name, root, tools, cipher, extra=()):
        super().__init__(name, root, tools)
        self.cipher = cipher
        self.extra = list(extra)
        self.passfile = root / "passfile"

    def create(self):
        run([self.tools["veilkey"], "init", str(self.back), "--passfile", str(self.passfile), "--no-recovery-code",
             "--cipher", self.cipher, "--kdf-memory", "65536", "--kdf-ops", "1"])

    def mount_cmd(self):
        return [self.tools["veilfs"], "--passfile", str(self.passfile), *self.extra, str(self.back), str(self.mnt)], None


class Gocryptfs(Fs):
    def __init__(self, name, root, tools):
        super().__init__(name, root, tools)
        self.passfile = root / "passfile"

    def create(self):
        run(["gocryptfs", "-init", "-q", "-passfile", str(self.passfile), str(self.back)])

    def mount_cmd(self):
        return ["gocryptfs", "-q", "-passfile", str(self.passfile), str(self.back), str(self.mnt)], None


class Securefs(Fs):
    def create(self):
        # One Argon2id pass (-r 1) instead of its default: mounts are frequent here, and the KDF's cost says
        # nothing about the filesystem's speed (veilfs is given a small KDF too).
        run(["securefs", "create", "-r", "1", "--pass", PASSWORD, str(self.back)])

    def mount_cmd(self):
        return ["securefs", "mount", "-b", "--pass", PASSWORD, str(self.back), str(self.mnt)], None


class Cryfs(Fs):
    def __init__(self, name, root, tools):
        super().__init__(name, root, tools)
        # cryfs keeps per-volume integrity state under $XDG_DATA_HOME; keep it with the volume.
        self.env.update(CRYFS_FRONTEND="noninteractive", CRYFS_NO_UPDATE_CHECK="true",
                        XDG_DATA_HOME=str(root / name / "state"))
        self.created = False

    def create(self):
        self.created = False
        shutil.rmtree(self.env["XDG_DATA_HOME"], ignore_errors=True)

    def mount_cmd(self):
        opts = [] if self.created else ["--cipher", "xchacha20-poly1305", "--blocksize", "16384"]
        self.created = True  # the first mount creates the volume
        return ["cryfs", *opts, str(self.back), str(self.mnt)], PASSWORD


class Encfs(Fs):
    def __init__(self, name, root, tools):
        super().__init__(name, root, tools)
        self.passfile = root / "passfile"

    def mount_cmd(self):
        return ["encfs", "--standard", f"--extpass=cat {self.passfile}", str(self.back), str(self.mnt)], None


def make_fs(name, root, tools):
    if name == "plain":
        return Plain(name, root, tools)
    if name == "passthrough":
        return Passthrough(name, root, tools)
    if name.startswith("veilfs-"):
        cipher, _, base = name.split("-", 1)[1].partition("@")
        cipher, _, mode = cipher.partition("+")
        if base:
            tools = dict(tools, veilfs=tools.get("veilfs@base"), veilkey=tools.get("veilkey@base"))
        return Veilfs(name, root, tools, cipher, ["--shared-storage"] if mode == "shared" else [])
    return {"gocryptfs": Gocryptfs, "securefs": Securefs, "cryfs": Cryfs, "encfs": Encfs}[name](name, root, tools)


def availability(name, tools):
    """None if the filesystem can run, else why not."""
    if name == "plain":
        return None
    if name == "passthrough":
        return None if tools.get("passthrough") else "veilfs_bench_passthrough was not built"
    if name.endswith("@base"):
        missing = [t for t in ("veilfs@base", "veilkey@base") if not tools.get(t)]
        return f"{' and '.join(missing)} not found (--baseline-build)" if missing else None
    if name.startswith("veilfs-"):
        missing = [t for t in ("veilfs", "veilkey") if not tools.get(t)]
        return f"{' and '.join(missing)} not built" if missing else None
    return None if shutil.which(name) else f"{name} is not installed"


# ---------------------------------------------------------------- workloads

class Bench:
    def __init__(self, args, tarball):
        self.a, self.tarball = args, tarball
        self.skipped_ops = {}  # fsx: per filesystem, the operations it lacks (skipped, not measured)

    def timed(self, cmd, shell=False):
        t0 = time.monotonic()
        run(cmd, shell=shell, timeout=3600)
        return time.monotonic() - t0

    def fio(self, fs, rw):
        cmd = ["fio", "--name", rw, "--filename", str(fs.mnt / "fio.dat"), "--rw", rw, "--bs", "4k",
               "--size", f"{self.a.fio_mib}M", "--ioengine", "psync", "--runtime", str(self.a.fio_seconds),
               "--time_based", "--output-format", "json"]
        out = run(cmd, stdout=subprocess.PIPE, timeout=600).stdout
        job = json.loads(out[out.index("{"):])["jobs"][0]
        side = job["write" if "write" in rw else "read"]
        if job.get("error"):
            raise RuntimeError(f"fio {rw}: error {job['error']}")
        return side["iops"]

    # Each step: (workload or None, what to do before it, unmeasured; the measured action returning the value).
    def steps(self, fs):
        a, m = self.a, fs.mnt
        seq, tree, many, fiof, db = m / "seq.dat", m / "tree", m / "many", m / "fio.dat", m / "bench.db"
        names = [f"f{i:05d}" for i in range(a.files)]

        def seqwrite():
            t = self.timed(["dd", "if=/dev/zero", f"of={seq}", "bs=1M", f"count={a.seq_mib}", "conv=fsync",
                            "status=none"])
            return a.seq_mib * MIB / 1e6 / t

        def seqread():
            if seq.stat().st_size != a.seq_mib * MIB:
                raise RuntimeError("seq.dat has the wrong size")
            t = self.timed(["dd", f"if={seq}", "of=/dev/null", "bs=1M", "status=none"])
            return a.seq_mib * MIB / 1e6 / t

        def untar():
            tree.mkdir()
            return self.timed(["tar", "-xf", str(self.tarball), "-C", str(tree)])

        def lsr():
            return self.timed(f"ls -lR '{tree}' > /dev/null", shell=True)

        def readall():
            return self.timed(f"find '{tree}' -type f -print0 | xargs -0 -r cat > /dev/null", shell=True)

        def rmrf():
            return self.timed(["rm", "-rf", str(tree)])

        def layout():
            run(["dd", "if=/dev/urandom", f"of={fiof}", "bs=1M", f"count={a.fio_mib}", "conv=fsync", "status=none"])

        def create():
            many.mkdir()
            t0 = time.monotonic()
            for n in names:
                os.close(os.open(many / n, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
            return time.monotonic() - t0

        def stat():
            t0 = time.monotonic()
            for n in names:
                os.lstat(many / n)
            return time.monotonic() - t0

        def unlink():
            t0 = time.monotonic()
            for n in names:
                os.unlink(many / n)
            return time.monotonic() - t0

        def sqlite():
            # Small transactions with SQLite's defaults (rollback journal, synchronous=FULL): each commit
            # creates, syncs and deletes a journal file, like an application saving its state.
            con = sqlite3.connect(db, isolation_level=None)
            try:
                con.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)")
                n, t0 = 0, time.monotonic()
                while time.monotonic() - t0 < a.sqlite_seconds:
                    con.execute("BEGIN")
                    con.execute("INSERT INTO t (v) VALUES (randomblob(200))")
                    con.execute("UPDATE t SET v = randomblob(200) WHERE id = ?", ((n * 7919) % (n + 1) + 1,))
                    con.execute("COMMIT")
                    n += 1
                elapsed = time.monotonic() - t0
                if con.execute("SELECT count(*) FROM t").fetchone()[0] != n:
                    raise RuntimeError("sqlite lost rows")
            finally:
                con.close()
            return n / elapsed

        def fsx():
            # The mount exerciser's operations (tests/integration/fsx.hpp), same seed everywhere; what a
            # filesystem lacks is skipped there and listed in the report.
            if not fs.tools.get("fsx"):
                raise RuntimeError("veilfs_bench_fsx was not built")
            out = run([fs.tools["fsx"], str(m / "fsx"), "--ops", str(a.fsx_ops), "--seed", str(a.fsx_seed)],
                      stdout=subprocess.PIPE, timeout=3600).stdout
            res = json.loads(out.strip().splitlines()[-1])
            if res["ops"] != a.fsx_ops:
                raise RuntimeError(f"fsx ran {res['ops']} of {a.fsx_ops} operations")
            self.skipped_ops[fs.name] = res["unsupported"]
            return res["ops_per_s"]

        # Groups: the first workload of a group writes what the others read; a group runs only if its first
        # workload is selected. (setup, [(workload, prepare, measured action)]); setup and prepare are not
        # measured. Files are not removed between groups: deleting 1 GiB takes cryfs minutes, and the whole
        # volume is thrown away after the run anyway.
        return [
            (None, [("seqwrite", None, seqwrite), ("seqread", lambda: fs.cold("seqread"), seqread)]),
            (None, [("untar", None, untar), ("lsR", lambda: fs.cold("lsR"), lsr),
                    ("readall", lambda: fs.cold("readall"), readall), ("rmrf", None, rmrf)]),
            (layout, [("randwrite", None, lambda: self.fio(fs, "randwrite")),
                      ("randread", lambda: fs.cold("randread"), lambda: self.fio(fs, "randread"))]),
            (None, [("create", None, create), ("stat", lambda: fs.cold("stat"), stat), ("unlink", None, unlink)]),
            (None, [("sqlite", None, sqlite)]),
            (None, [("fsx", None, fsx)]),
        ]


def measure(fs, run_no, wl, prepare, action, writer, out_rows):
    """Runs one workload, with the daemon's CPU time and peak RSS; a failure is recorded, not raised."""
    try:
        if prepare:
            prepare()
        pid = fs.pid
        load = os.getloadavg()[0]  # recorded with every sample: the machine is shared, this says how busy it was
        if pid:
            reset_peak_rss(pid)
        cpu0 = cpu_seconds(pid) if pid else None
        t0 = time.monotonic()
        value = action()
        wall = time.monotonic() - t0
        cpu = cpu_seconds(pid) - cpu0 if pid else None
        rss = peak_rss_kib(pid) if pid else None
        row = {"run": run_no, "fs": fs.name, "workload": wl, "value": round(value, 3), "unit": UNIT[wl],
               "wall_s": round(wall, 3), "daemon_cpu_s": "" if cpu is None else round(cpu, 2),
               "daemon_peak_rss_kib": "" if rss is None else rss, "loadavg1": round(load, 2)}
        log(f"  {fs.name:26} {wl:9} {value:12.2f} {UNIT[wl]:5}  (daemon cpu {row['daemon_cpu_s']} s, "
            f"peak rss {row['daemon_peak_rss_kib']} KiB, load {load:.1f})")
    except Exception as e:  # noqa: BLE001 - a failing workload must not stop the others
        loud(f"{fs.name}: {wl} FAILED: {e}")
        row = {"run": run_no, "fs": fs.name, "workload": wl, "value": "failed", "unit": UNIT[wl],
               "wall_s": "", "daemon_cpu_s": "", "daemon_peak_rss_kib": "", "loadavg1": ""}
        if fs.fuse and not mounted(fs.mnt):
            loud(f"{fs.name}: the mount is gone (daemon crashed?); remounting")
            fs.pid = None
            fs.mount()  # raises if it cannot: the rest of this run is aborted
    writer.writerow(row)
    out_rows.append(row)


def run_one(bench, fs, run_no, workloads, writer, out_rows):
    """One run of every selected workload on one filesystem; a failing workload is recorded and skipped."""
    fs.fresh()
    fs.create()
    fs.mount()
    if fs.fuse and not fs.pid:
        loud(f"{fs.name}: could not find the daemon's PID; CPU and memory columns will be empty")
    try:
        for setup, group in bench.steps(fs):
            if group[0][0] not in workloads:
                continue
            if setup:
                setup()
            for wl, prepare, action in group:
                if wl in workloads:
                    measure(fs, run_no, wl, prepare, action, writer, out_rows)
    finally:
        fs.unmount()
        shutil.rmtree(fs.back.parent, ignore_errors=True)


# ---------------------------------------------------------------- the source tree

def make_tarball(cache, nfiles):
    """A tarball of about nfiles files sampled evenly from /usr/include and /usr/share/doc, built once."""
    tar = cache / f"tree-{nfiles}.tar"
    if tar.exists():
        return tar
    entries = []
    for top in ("/usr/include", "/usr/share/doc"):
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames.sort()
            for f in sorted(filenames):
                p = os.path.join(dirpath, f)
                if os.path.islink(p) or os.path.isfile(p):
                    entries.append(p)
    step = max(1.0, len(entries) / nfiles)
    chosen = [entries[int(i * step)] for i in range(min(nfiles, len(entries)))]
    cache.mkdir(parents=True, exist_ok=True)
    lst = cache / f"tree-{nfiles}.list"
    lst.write_text("\n".join(p.lstrip("/") for p in chosen) + "\n")
    tmp = tar.with_suffix(".tmp")
    # --hard-dereference: cryfs has no hard links; the tree must extract on every filesystem.
    run(["tar", "-cf", str(tmp), "-C", "/", "--hard-dereference", "-T", str(lst)])
    tmp.rename(tar)
    return tar


# ---------------------------------------------------------------- report

def fmt(v, unit):
    if v is None:
        return "—"
    if unit == "s":
        return f"{v:.2f}" if v < 10 else f"{v:.1f}"
    return f"{v:,.0f}"


def speedup(wl, mine, other):
    """How many times faster `mine` is than `other` (>1: faster), for any unit."""
    if mine is None or other is None or mine <= 0 or other <= 0:
        return None
    return mine / other if HIGHER[wl] else other / mine


def write_report(outdir, args, rows, fs_names, skipped, engine_txt, info, skipped_ops):
    med = {}
    for fs in fs_names:
        for wl, _, _ in WORKLOADS:
            vals = [r["value"] for r in rows if r["fs"] == fs and r["workload"] == wl and r["value"] != "failed"]
            fails = sum(1 for r in rows if r["fs"] == fs and r["workload"] == wl and r["value"] == "failed")
            med[fs, wl] = (statistics.median(vals) if vals else None, fails)
    res = {}
    for fs in fs_names:
        for key in ("daemon_cpu_s", "daemon_peak_rss_kib"):
            for wl, _, _ in WORKLOADS:
                vals = [float(r[key]) for r in rows if r["fs"] == fs and r["workload"] == wl and r[key] != ""]
                res[fs, wl, key] = statistics.median(vals) if vals else None
    wls = [w for w, _, _ in WORKLOADS if any(med[f, w][0] is not None or med[f, w][1] for f in fs_names)]

    def cell(fs, wl):
        v, fails = med[fs, wl]
        s = fmt(v, UNIT[wl])
        return s + (f" ({fails} failed)" if fails else "")

    L = []
    L.append(f"# veilfs benchmark — {info['when']}")
    L.append("")
    L.append(f"Mode: {'quick' if args.quick else 'full'}; {args.runs} run(s) per cell, filesystems interleaved, "
             f"medians shown. Machine: {info['cpu']}, {os.cpu_count()} CPUs, kernel {os.uname().release}; "
             f"backing dirs under `{args.workdir}` ({info['disk']}).")
    L.append(f"Workloads: seqwrite = dd {args.seq_mib} MiB bs=1M conv=fsync; seqread = dd of it (cold, "
             f"see below); untar/lsR/readall/rmrf on a tarball of {info['tree_files']} files "
             f"({info['tree_mb']:.0f} MB, /usr/include + /usr/share/doc, read from tmpfs); fio 4 KiB psync "
             f"randwrite/randread, {args.fio_mib} MiB file, {args.fio_seconds} s; create/stat/unlink "
             f"{args.files} empty files in one dir; sqlite = SQLite transactions (insert + update, default "
             f"rollback journal, synchronous=FULL) for {args.sqlite_seconds} s; fsx = {args.fsx_ops} random operations "
             f"of the mount exerciser (bench/fsx.cpp, seed {args.fsx_seed}: pwrite/pread, truncate, mmap with msync, "
             "fallocate in every mode, copy_file_range, unaligned O_DIRECT, fsync; each checked against a model). " + (
             "Read workloads (seqread, lsR, readall, randread, stat) are preceded by a remount and drop_caches."
             if args.remount == "all" else "seqread is preceded by a remount and drop_caches; the other read "
             "workloads (lsR, readall, randread, stat) by drop_caches only (--remount seqread)."
             if args.remount == "seqread" else "Read workloads (seqread, lsR, readall, randread, stat) are "
             "preceded by drop_caches, without a remount (--remount none): a daemon's own caches stay warm."))
    loads = [float(r["loadavg1"]) for r in rows if r.get("loadavg1") not in ("", None)]
    if loads:
        L.append(f"Machine load (1-min load average at the start of each workload; {os.cpu_count()} CPUs): "
                 f"min {min(loads):.1f}, median {statistics.median(loads):.1f}, max {max(loads):.1f}. "
                 "Above the CPU count, other processes compete with the daemons and the figures are noisy.")
    L.append("")
    if skipped:
        L.append("**Skipped:** " + "; ".join(f"{k} ({v})" for k, v in skipped.items()))
        L.append("")
    L.append("## Medians")
    L.append("")
    L.append("| filesystem | " + " | ".join(f"{w} {UNIT[w]}" for w in wls) + " |")
    L.append("|---" * (len(wls) + 1) + "|")
    for fs in fs_names:
        L.append(f"| {fs} | " + " | ".join(cell(fs, w) for w in wls) + " |")
    L.append("")
    L.append("Higher is better for MB/s, IOPS, tx/s and ops/s; lower is better for seconds.")
    L.append("")
    if skipped_ops:
        L.append("fsx operations a filesystem lacks, skipped there (same seed, so the rest is the same sequence; "
                 "COLLAPSE/INSERT_RANGE are never tried outside the tests):")
        L.append("")
        for fs in fs_names:
            if fs in skipped_ops:
                ops = skipped_ops[fs]
                L.append(f"- {fs}: " + (", ".join(f"{k} ×{v}" for k, v in sorted(ops.items())) if ops else "none"))
        L.append("")

    peers = [p for p in PEERS if p in fs_names]
    veils = [v for v in VEIL if v in fs_names]
    for v in veils:
        L.append(f"## {v}: speed-up (>1 = {v} is faster)")
        L.append("")
        L.append("| against | " + " | ".join(wls) + " |")
        L.append("|---" * (len(wls) + 1) + "|")

        def best_peer(wl):
            cands = [(p, med[p, wl][0]) for p in peers if med[p, wl][0] is not None]
            if not cands:
                return None, None
            return max(cands, key=lambda c: c[1] if HIGHER[wl] else -c[1])

        for label, getter in (
            ("gocryptfs", lambda wl: med["gocryptfs", wl][0] if "gocryptfs" in fs_names else None),
            ("best peer", lambda wl: best_peer(wl)[1]),
            ("plain disk", lambda wl: med["plain", wl][0] if "plain" in fs_names else None),
            ("passthrough", lambda wl: med["passthrough", wl][0] if "passthrough" in fs_names else None),
        ):
            cells = []
            for wl in wls:
                s = speedup(wl, med[v, wl][0], getter(wl))
                extra = f" ({best_peer(wl)[0]})" if label == "best peer" and s is not None else ""
                cells.append("—" if s is None else f"{s:.2f}x{extra}")
            L.append(f"| {label} | " + " | ".join(cells) + " |")
        L.append("")

    L.append("## Targets (issues 3 and 5)")
    L.append("")
    targets = [("seqwrite", "gocryptfs", 3), ("seqread", "gocryptfs", 3)]
    targets += [(w, "gocryptfs", 2) for w in ("untar", "lsR", "readall", "rmrf", "randwrite", "create", "stat",
                                              "unlink")]
    targets += [("seqwrite", "plain", 0.5), ("seqread", "plain", 0.5)]
    if not veils:
        L.append("- veilfs did not run: no target can be checked.")
    for v in veils:
        for wl, other, need in targets:
            if other not in fs_names:
                L.append(f"- {v} {wl} ≥ {need}x {other}: cannot check ({other} did not run)")
                continue
            s = speedup(wl, med[v, wl][0], med[other, wl][0])
            if s is None:
                L.append(f"- {v} {wl} ≥ {need}x {other}: cannot check (no figure)")
            else:
                L.append(f"- {v} {wl} ≥ {need}x {other}: {s:.2f}x — **{'met' if s >= need else 'NOT met'}**")
    L.append("")

    L.append("## Daemon CPU seconds per workload (median)")
    L.append("")
    fuse_fs = [f for f in fs_names if f != "plain"]
    L.append("| filesystem | " + " | ".join(wls) + " |")
    L.append("|---" * (len(wls) + 1) + "|")
    for fs in fuse_fs:
        L.append(f"| {fs} | " + " | ".join(
            "—" if res[fs, w, "daemon_cpu_s"] is None else f"{res[fs, w, 'daemon_cpu_s']:.2f}" for w in wls) + " |")
    L.append("")
    L.append("## Daemon peak RSS per workload, MiB (median of VmHWM, reset before each workload)")
    L.append("")
    L.append("| filesystem | " + " | ".join(wls) + " |")
    L.append("|---" * (len(wls) + 1) + "|")
    for fs in fuse_fs:
        L.append(f"| {fs} | " + " | ".join(
            "—" if res[fs, w, "daemon_peak_rss_kib"] is None else f"{res[fs, w, 'daemon_peak_rss_kib'] / 1024:.0f}"
            for w in wls) + " |")
    L.append("")
    L.append("![speed relative to gocryptfs](chart.png)")
    L.append("")
    L.append("## Content engine micro-benchmark (`veilfs_engine_bench`)")
    L.append("")
    L.append(engine_txt.strip() if engine_txt else "(not run)")
    L.append("")
    L.append("Raw samples: `results.csv`; log: `log.txt`.")
    (outdir / "results.md").write_text("\n".join(L) + "\n")
    return med


def write_chart(outdir, med, fs_names):
    """Clustered bars: each filesystem's speed relative to gocryptfs (or the plain disk), log scale."""
    if not shutil.which("gnuplot"):
        loud("gnuplot is not installed: no chart")
        return
    ref = "gocryptfs" if "gocryptfs" in fs_names else fs_names[0]
    wls = [w for w, _, _ in WORKLOADS if med.get((ref, w), (None,))[0]]
    if not wls:
        return
    dat = outdir / "chart.dat"
    with open(dat, "w") as f:
        f.write("workload " + " ".join(fs_names) + "\n")
        for w in wls:
            vals = []
            for fs in fs_names:
                s = speedup(w, med[fs, w][0], med[ref, w][0])
                vals.append("NaN" if s is None else f"{s:.4f}")
            f.write(f"{w} " + " ".join(vals) + "\n")
    gp = outdir / "chart.gp"
    gp.write_text(f"""set terminal pngcairo size 1600,700 font ",11" noenhanced
set output '{outdir / "chart.png"}'
set title "Speed relative to {ref} (higher is better; times inverted), log scale"
set style data histogram
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set logscale y 2
set grid ytics
set key outside right top vertical
set ylabel "x {ref}"
set xtics rotate by -30
plot for [i=2:{len(fs_names) + 1}] '{dat}' using i:xtic(1) title columnhead(i), 1 with lines lc rgb "black" dt 2 notitle
""")
    r = run(["gnuplot", str(gp)], check=False)
    if r.returncode != 0:
        # pngcairo may be missing from a minimal gnuplot; the plain png terminal always exists.
        gp.write_text(gp.read_text().replace("pngcairo size 1600,700 font \",11\"", "png size 1600,700"))
        r = run(["gnuplot", str(gp)], check=False)
        if r.returncode != 0:
            loud(f"gnuplot failed: {r.stderr.strip()}")


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1 run, smaller sizes: under 5 minutes")
    ap.add_argument("--runs", type=int)
    ap.add_argument("--fs", help="comma-separated subset of " + ",".join(ALL_FS) +
                    " (default: all, the @base rows only with --baseline-build)")
    ap.add_argument("--workloads", default=",".join(w for w, _, _ in WORKLOADS))
    ap.add_argument("--workdir", default="/var/tmp/veilfs-bench", help="backing dirs (same disk for all)")
    ap.add_argument("--cache", default="/dev/shm/veilfs-bench", help="tmpfs dir for the source tarball")
    ap.add_argument("--results", default=str(Path(__file__).resolve().parent / "results"))
    ap.add_argument("--build-dir", required=True)
    ap.add_argument("--baseline-build", help="build dir of another veilfs (e.g. the commit before a change): its "
                    "rows are veilfs-<cipher>@base, measured in the same run")
    ap.add_argument("--broken", default="", help="build targets that failed to build (their binaries are stale)")
    ap.add_argument("--seq-mib", type=int)
    ap.add_argument("--fio-mib", type=int, default=256)
    ap.add_argument("--fio-seconds", type=int)
    ap.add_argument("--tree-files", type=int)
    ap.add_argument("--files", type=int)
    ap.add_argument("--sqlite-seconds", type=float)
    ap.add_argument("--fsx-ops", type=int, help="operations of the fsx workload (default 20000; --quick: 5000)")
    ap.add_argument("--fsx-seed", type=int, default=20261121)
    ap.add_argument("--remount", choices=["all", "seqread", "none"],
                    help="before read workloads, remount and drop caches (all, the default), or remount only before "
                         "seqread, or never remount and only drop caches (--quick: cryfs spends 7-50 s in its KDF "
                         "at every mount)")
    ap.add_argument("--nice", type=int, default=-10, help="scheduling priority of the benchmark and its daemons "
                    "(default -10: ahead of other work on a shared machine; 0 to leave it)")
    ap.add_argument("--no-engine", action="store_true", help="skip the content-engine micro-benchmark")
    a = ap.parse_args()
    q = a.quick
    a.runs = a.runs or (1 if q else 3)
    a.seq_mib = a.seq_mib or (256 if q else 1024)
    a.fio_seconds = a.fio_seconds or (5 if q else 15)
    a.tree_files = a.tree_files or (2000 if q else 20000)
    a.files = a.files or (2000 if q else 10000)
    a.sqlite_seconds = a.sqlite_seconds or (2 if q else 5)
    a.fsx_ops = a.fsx_ops or (5000 if q else 20000)
    a.remount = a.remount or ("none" if q else "all")

    if os.geteuid() != 0:
        sys.exit("bench/run.py must run as root (mounts, drop_caches, clear_refs)")
    if a.nice:
        # Every filesystem's daemon and workload inherit this, so all get the same edge over whatever else
        # runs on a shared machine (compilers, test suites), which would otherwise add noise.
        os.setpriority(os.PRIO_PROCESS, 0, a.nice)
    build = Path(a.build_dir).resolve()
    tools = {}
    for key, rel in (("veilfs", "veilfs"), ("veilkey", "keytool/veilkey"), ("passthrough",
                     "bench/veilfs_bench_passthrough"), ("engine", "bench/veilfs_engine_bench"),
                     ("fsx", "bench/veilfs_bench_fsx")):
        p = build / rel
        tools[key] = str(p) if p.is_file() and os.access(p, os.X_OK) else None
    target = {"veilfs": "veilfs", "veilkey": "veilkey", "veilfs_bench_passthrough": "passthrough",
              "veilfs_engine_bench": "engine", "veilfs_bench_fsx": "fsx"}
    if a.baseline_build:
        base = Path(a.baseline_build).resolve()
        for key, rel in (("veilfs@base", "veilfs"), ("veilkey@base", "keytool/veilkey")):
            p = base / rel
            tools[key] = str(p) if p.is_file() and os.access(p, os.X_OK) else None
    for t in filter(None, a.broken.split(",")):
        tools[target.get(t, t)] = None

    default_fs = [f for f in ALL_FS if a.baseline_build or f not in VEIL_BASE]
    wanted = [f for f in (a.fs.split(",") if a.fs else default_fs) if f]
    bad = [f for f in wanted if f not in ALL_FS]
    if bad:
        sys.exit(f"unknown filesystem(s): {bad}; known: {ALL_FS}")
    workloads = set(w for w in a.workloads.split(",") if w)
    skipped = {}
    fs_names = []
    for f in wanted:
        why = availability(f, tools)
        if why:
            loud(f"SKIPPING {f}: {why}")
            skipped[f] = why
        else:
            fs_names.append(f)

    when = dt.datetime.now(dt.timezone.utc)
    outdir = Path(a.results) / when.strftime("%Y%m%dT%H%M%SZ")
    outdir.mkdir(parents=True)
    root = Path(a.workdir).resolve() / when.strftime("%Y%m%dT%H%M%SZ")
    root.mkdir(parents=True)
    (root / "passfile").write_text(PASSWORD)
    os.chmod(root / "passfile", 0o600)

    # Everything printed from here on also goes to log.txt.
    saved = os.dup(1), os.dup(2)
    tee = subprocess.Popen(["tee", str(outdir / "log.txt")], stdin=subprocess.PIPE)
    os.dup2(tee.stdin.fileno(), 1)
    os.dup2(tee.stdin.fileno(), 2)

    active = []

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    t_start = time.monotonic()
    rows = []
    engine_txt = ""
    try:
        log(f"results: {outdir}")
        log(f"filesystems: {', '.join(fs_names)}")
        tar = make_tarball(Path(a.cache), a.tree_files)
        with open(tar, "rb"):
            pass
        info = {"when": when.strftime("%Y-%m-%d %H:%M UTC"), "tree_mb": tar.stat().st_size / 1e6,
                "tree_files": len(Path(a.cache, f"tree-{a.tree_files}.list").read_text().splitlines()),
                "cpu": next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                             if line.startswith("model name")), "?"),
                "disk": run(["df", "--output=source,fstype", str(root)], stdout=subprocess.PIPE).stdout.split(
                    "\n")[1].strip()}
        bench = Bench(a, tar)

        if tools["engine"] and not a.no_engine:
            log("content engine micro-benchmark")
            cmd = [tools["engine"], "--reps", "1" if q else "3", "--mib", "128" if q else "256",
                   "--csv", str(outdir / "engine.csv")]
            r = run(cmd, check=False, stdout=subprocess.PIPE, timeout=600)
            engine_txt = r.stdout + (f"\n(exit {r.returncode}: {r.stderr.strip()})" if r.returncode else "")
            (outdir / "engine.txt").write_text(engine_txt)
            print(engine_txt, flush=True)
        elif not a.no_engine:
            loud("SKIPPING the engine micro-benchmark: veilfs_engine_bench was not built")

        with open(outdir / "results.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["run", "fs", "workload", "value", "unit", "wall_s",
                                                   "daemon_cpu_s", "daemon_peak_rss_kib", "loadavg1"])
            writer.writeheader()
            for run_no in range(1, a.runs + 1):
                k = (run_no - 1) % len(fs_names) if fs_names else 0
                order = fs_names[k:] + fs_names[:k]  # rotated, so no filesystem is always first or last
                for name in order:
                    fs = make_fs(name, root, tools)
                    fs.remount_policy = a.remount
                    active.append(fs)
                    log(f"run {run_no}/{a.runs}: {name}")
                    try:
                        run_one(bench, fs, run_no, workloads, writer, rows)
                    except KeyboardInterrupt:
                        raise
                    except Exception as e:  # noqa: BLE001 - one broken filesystem must not stop the rest
                        loud(f"{name}: run {run_no} aborted: {e}")
                    finally:
                        active.remove(fs)
                    f.flush()
        med = write_report(outdir, a, rows, fs_names, skipped, engine_txt, info, bench.skipped_ops)
        write_chart(outdir, med, fs_names)
        log(f"done in {time.monotonic() - t_start:.0f} s: {outdir / 'results.md'}")
        print((outdir / "results.md").read_text(), flush=True)
    finally:
        for fs in active:
            try:
                fs.unmount()
            except Exception as e:  # noqa: BLE001
                loud(f"cleanup: {fs.name}: {e}")
        shutil.rmtree(root, ignore_errors=True)
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        tee.stdin.close()
        tee.wait()


if __name__ == "__main__":
    main()
