#!/usr/bin/env python3
"""Runs every example of README.md and of the man pages' EXAMPLES sections, as written.

Usage: tests/package/doc_examples.py   (as root; scripts/test.sh's "docs" phase, after the package phase)

The examples are found in the documents themselves: README's ```sh and ```fstab blocks, and the man pages'
.Bd -literal blocks and .Dl lines under EXAMPLES. Each must have an entry in EXAMPLES below, found by its first
line, which says what state it needs (a volume, a pass file) and what must hold afterwards; an example without an
entry fails the run, so a new example cannot go untested. The text itself is run by bash unchanged, except for a
placeholder an entry names (the man page's "5tCnZ0d3...", a backing name that differs in every volume) and a line
an entry declares not runnable here, with the reason (printed loudly).

The run happens in a private mount namespace: /srv, /media, /root and /usr/local are fresh tmpfs there and
/etc/fstab is a temporary file bound over the real one, so the examples' own paths work without touching the
machine. HOME is a scratch directory. README's install example installs the Debian package (apt-get), which is
purged at the end. Passphrases come from standard input, one line per question, as they do whenever it is not a
terminal.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.realpath(os.path.join(os.path.dirname(__file__), "..", ".."))
PASS = "a documented passphrase"
FAST = "--kdf-memory 65536 --kdf-ops 1"  # for volumes the setup makes (the examples keep the defaults)
SCRATCH_DIRS = ["/srv", "/media", "/root", "/usr/local"]

# Shell functions every entry's setup and check may use.
HELPERS = r"""
fresh() { cd /; for m in "$HOME"/vault "$HOME"/*/vault /srv/vault; do mountpoint -q "$m" 2>/dev/null && fusermount3 -u "$m"; done; rm -rf "$HOME"; mkdir -p "$HOME"; cd "$HOME"; }
# mkvol DIR PASSFILE: a volume with the passphrase in PASSFILE (a cheap KDF); its recovery code in DIR.code.
mkvol() { veilkey init "$1" --passfile "$2" """ + FAST + r""" > "$1.code"; }
waitmount() { for _ in $(seq 300); do mountpoint -q "$1" && return 0; sleep 0.1; done; echo "!!! $1 never mounted" >&2; return 1; }
unmount() { if mountpoint -q "$1"; then fusermount3 -u "$1"; fi; }
"""


def pw_lines(n=12):
    return (PASS + "\n") * n


# Found by the beginning of the example's text (after its prompts; the longest key that matches). Fields: setup, check (bash, same shell, cwd $HOME),
# stdin (a string, or "!CMD" for a command's output), cwd ("repo" to run in the source tree), background (the
# example stays in the foreground until unmounted: run it in the background, then check, then wait for its exit
# status), fstab (the example is an fstab line: it becomes /etc/fstab and `mount -a` is run, as the text says),
# skip_lines {line: reason}, subst {placeholder: shell expression}, skip (the whole example, with the reason).
EXAMPLES = {
    # ---- README.md ----
    "bash scripts/demo.sh": dict(
        cwd="repo",
        skip_lines={"bash scripts/test.sh": "the command CI runs (.ci/run): this very run"},
        check="test -f /tmp/veilfs-demo/cipher/veilfs.conf && ! mountpoint -q /tmp/veilfs-demo/plain",
    ),
    "sudo cmake --install build-release": dict(
        cwd="repo",
        check="/usr/local/bin/veilfs --version && /usr/local/bin/veilkey --version && "
        "test -f /usr/local/share/man/man1/veilfs.1.gz && umount /usr/local && ! test -e /usr/local/bin/veilfs",
    ),
    "(cd build-release && cpack -G DEB)": dict(
        cwd="repo",
        check="dpkg-query -W -f='${Status}' veilfs | grep -q 'install ok installed' && test -x /usr/bin/veilfs",
    ),
    "veilkey init ~/vault.enc > ~/vault.recovery": dict(
        setup="fresh",
        stdin=pw_lines(),
        check="test -s ~/vault.recovery && ! mountpoint -q ~/vault && "
        "veilfs fsck --passfile <(echo '" + PASS + "') ~/backup/vault.enc",
    ),
    "/srv/vault.enc /srv/vault fuse.veilfs passfile=/root/vault.pass,allow_other 0 0": dict(
        fstab=True,
        setup="unmount /srv/vault; rm -rf /srv/vault.enc /srv/vault; mkdir -p /srv/vault; "
        "echo '" + PASS + "' > /root/vault.pass; mkvol /srv/vault.enc /root/vault.pass",
        check="mountpoint -q /srv/vault && echo at-boot > /srv/vault/f && fusermount3 -u /srv/vault",
    ),
    "mount -t fuse.veilfs -o passfile=/root/vault.pass /srv/vault.enc /srv/vault": dict(
        check="mountpoint -q /srv/vault && test \"$(cat /srv/vault/f)\" = at-boot && fusermount3 -u /srv/vault",
    ),
    "sudo bash bench/run.sh": dict(
        skip="the benchmark suite (about an hour; it installs the peers): run by hand, see bench/README.md",
    ),
    # ---- veilfs(1) ----
    "veilkey init ~/vault.enc\nmkdir ~/vault": dict(
        setup="fresh",
        stdin=pw_lines(),
        check="test -f ~/vault.enc/veilfs.conf && ! mountpoint -q ~/vault",
    ),
    "veilfs -f --ro --passfile ~/.vault.pass ~/vault.enc ~/vault": dict(
        setup="echo '" + PASS + "' > ~/.vault.pass",
        background=True,
        check="waitmount ~/vault; ! touch ~/vault/x 2>/dev/null; fusermount3 -u ~/vault",
    ),
    "/srv/vault.enc /srv/vault fuse.veilfs passfile=/root/vault.pass 0 0": dict(
        fstab=True,
        setup="unmount /srv/vault; rm -rf /srv/vault.enc /srv/vault; mkdir -p /srv/vault; "
        "echo '" + PASS + "' > /root/vault.pass; mkvol /srv/vault.enc /root/vault.pass",
        check="mountpoint -q /srv/vault && echo at-boot > /srv/vault/f && fusermount3 -u /srv/vault",
    ),
    "mount -t fuse.veilfs -o passfile=/root/vault.pass \\": dict(
        check="mountpoint -q /srv/vault && test \"$(cat /srv/vault/f)\" = at-boot && fusermount3 -u /srv/vault",
    ),
    "mkdir -p ~/.config/veilfs\nprintf 'CIPHERDIR=%s\\nMOUNTPOINT=%s\\n'": dict(
        skip="needs a systemd user manager (systemctl --user), which this machine has not; install_test.sh checks "
        "the unit with systemd-analyze verify and runs its ExecStart as systemd would",
    ),
    "veilfs fsck ~/vault.enc": dict(stdin=pw_lines()),
    "veilfs xray ~/vault.enc ~/vault.enc/5tCnZ0d3...": dict(
        setup="echo '" + PASS + "' > ~/.pass; veilfs --passfile ~/.pass ~/vault.enc ~/vault; mkdir -p ~/vault/docs; "
        "echo report > ~/vault/docs/report.txt; fusermount3 -u ~/vault",
        subst={"~/vault.enc/5tCnZ0d3...": "~/vault.enc/\"$(ls ~/vault.enc | grep -v '^veilfs\\.' | head -1)\""},
        stdin=pw_lines(),
    ),
    "veilkey passwd ~/vault.enc": dict(stdin=pw_lines(), check="veilfs fsck --passfile ~/.pass ~/vault.enc"),
    "veilkey init ~/Sync/vault.enc --config ~/.config/veilfs/vault.enc.conf\nveilfs --config": dict(
        setup="unmount ~/vault; rm -rf ~/Sync ~/.config/veilfs; mkdir -p ~/Sync ~/.config/veilfs ~/vault",
        stdin=pw_lines(),
        check="mountpoint -q ~/vault && ! test -e ~/Sync/vault.enc/veilfs.conf && fusermount3 -u ~/vault",
    ),
    "veilfs --recovery-code ~/vault.enc ~/vault": dict(
        setup="fresh; echo '" + PASS + "' > ~/.pass; mkvol ~/vault.enc ~/.pass; mkdir ~/vault; "
        "rm ~/vault.enc/veilfs.conf",
        stdin="!cat ~/vault.enc.code ~/vault.enc.code; echo '" + PASS + "'",
        check="mountpoint -q ~/vault && fusermount3 -u ~/vault && veilfs fsck --passfile ~/.pass ~/vault.enc",
    ),
    "veilkey init --reverse ~/Documents\nmkdir -p ~/view": dict(
        setup="fresh; mkdir -p ~/Documents/node_modules /media/usb; echo notes > ~/Documents/notes.txt; "
        "echo dep > ~/Documents/node_modules/dep.js; echo x > ~/Documents/scratch.tmp; rm -rf /media/usb/*",
        stdin=pw_lines(),
        check="test \"$(cat ~/restore/notes.txt)\" = notes && ! test -e ~/restore/node_modules && "
        "! test -e ~/restore/scratch.tmp && fusermount3 -u ~/restore && veilfs fsck --passfile <(echo '" + PASS +
        "') /media/usb/documents.veilfs",
    ),
    # ---- veilkey(1) ----
    "veilkey init ~/vault.enc": dict(setup="fresh", stdin=pw_lines(), check="test -f ~/vault.enc/veilfs.conf"),
    "veilkey init ~/vault.enc --cipher xchacha20poly1305 \\": dict(
        setup="fresh; echo '" + PASS + "' > pass.txt",
        check="test -s recovery.txt && veilkey info ~/vault.enc | grep -q xchacha20poly1305",
    ),
    "printf '%s\\n%s\\n' \"$OLD\" \"$NEW\" | veilkey passwd ~/vault.enc": dict(
        setup="OLD='" + PASS + "'; NEW='" + PASS + "'",
        check="veilfs fsck --passfile pass.txt ~/vault.enc",
    ),
    "veilkey slot add ~/vault.enc --new-random-keyfile /media/usb/vault.key": dict(
        setup="mkdir -p /media/usb; rm -f /media/usb/vault.key",
        stdin=pw_lines(),
        check="test -s /media/usb/vault.key && veilfs fsck --keyfile /media/usb/vault.key ~/vault.enc",
    ),
    "veilkey slot remove ~/vault.enc --slot 2 --passfile mine.txt": dict(
        setup="fresh; echo mine > mine.txt; echo other > other.txt; mkvol ~/vault.enc mine.txt; "
        "veilkey slot add ~/vault.enc --passfile mine.txt --new-passfile other.txt " + FAST + "; "
        "veilkey slot add ~/vault.enc --passfile mine.txt --new-passfile other.txt " + FAST,
        check="test \"$(veilkey slot list ~/vault.enc | wc -l)\" = 2 && ! veilkey slot list ~/vault.enc | grep -q 'slot 2'",
    ),
    "veilkey info ~/vault.enc --json": dict(),
    "veilkey recover ~/vault.enc --recovery-code-file recovery.txt \\": dict(
        setup="fresh; echo '" + PASS + "' > pass.txt; echo new > new.txt; "
        "veilkey init ~/vault.enc --passfile pass.txt " + FAST + " > recovery.txt",
        check="veilfs fsck --passfile new.txt ~/vault.enc",
    ),
    "veilkey recover ~/vault.enc --recovery-code-file recovery.txt\nveilkey init ~/Sync": dict(
        setup="rm ~/vault.enc/veilfs.conf; mkdir -p ~/Sync ~/.config/veilfs",
        stdin=pw_lines(),
        check="veilfs fsck --passfile pass.txt ~/vault.enc && "
        "veilfs fsck --config ~/.config/veilfs/vault.enc.conf --passfile pass.txt ~/Sync/vault.enc",
    ),
}


def unroff(line):
    line = line.replace("\\(dq", '"').replace("\\-", "-").replace("\\&", "").replace("\\e", "\\")
    return line


def strip_prompt(line):
    return line[2:] if line.startswith("$ ") or line.startswith("# ") else line


def readme_examples(path):
    out, block, lang = [], None, None
    for line in open(path, encoding="utf-8").read().split("\n"):
        if block is None:
            m = re.match(r"^```(\w*)$", line)
            if m:
                block, lang = [], m.group(1)
        elif line == "```":
            if lang in ("sh", "fstab"):
                out.append(("README.md", "\n".join(block), lang == "fstab"))
            block = None
        else:
            block.append(line)
    return out


def man_examples(path):
    name = os.path.basename(path)
    out, in_examples, block = [], False, None
    for line in open(path, encoding="utf-8").read().split("\n"):
        if line.startswith(".Sh "):
            in_examples = line == ".Sh EXAMPLES"
            continue
        if not in_examples:
            continue
        if line.startswith(".Bd -literal"):
            block = []
        elif line == ".Ed" and block is not None:
            text = "\n".join(strip_prompt(unroff(l)) for l in block)
            out.append((name, text, "fuse.veilfs" in text and not text.startswith("mount")))
            block = None
        elif block is not None:
            block.append(line)
        elif line.startswith(".Dl "):
            out.append((name, strip_prompt(unroff(line[4:])), False))
    return out


def entry_for(text):
    found = [k for k in EXAMPLES if text.startswith(k)]
    found.sort(key=len, reverse=True)  # the most specific key
    return found[0] if found else None


def run_example(doc, text, is_fstab, key, env, fstab_path):
    e = EXAMPLES[key]
    title = f"{doc}: {text.splitlines()[0]}"
    if "skip" in e:
        print(f"!!! SKIPPED {title}\n    ({e['skip']})", flush=True)
        return True
    lines = text.split("\n")
    for line, why in e.get("skip_lines", {}).items():
        if line in [l.split("  #")[0].strip() for l in lines]:
            lines = [l for l in lines if l.split("  #")[0].strip() != line]
            print(f"!!! not run: `{line}` ({why})", flush=True)
    body = "\n".join(lines)
    for old, new in e.get("subst", {}).items():
        if old not in body:
            print(f"!!! FAILED {title}: the placeholder {old} is not in the example", flush=True)
            return False
        body = body.replace(old, new)
    if is_fstab:
        with open(fstab_path, "w") as f:
            f.write(body + "\n")
        body = "mount -a"
    stdin = e.get("stdin", "")
    cwd = REPO if e.get("cwd") == "repo" else env["HOME"]
    script = ["set -euo pipefail", HELPERS, f"cd {cwd}" if e.get("cwd") == "repo" else 'cd "$HOME"']
    script.append(e.get("setup", ":"))
    if stdin.startswith("!"):
        script.append(f"exec 0< <({stdin[1:]})")
    if e.get("background"):
        script.append(f"( {body}\n) &\nexample=$!")
        script.append(e.get("check", ":"))
        script.append("wait $example")
    else:
        script.append(f'cd {cwd if e.get("cwd") == "repo" else chr(34) + "$HOME" + chr(34)}')
        script.append(body)
        script.append(e.get("check", ":"))
    t0 = time.time()
    r = subprocess.run(["bash", "-c", "\n".join(script)], input=None if stdin.startswith("!") else stdin,
                       text=True, env=env, capture_output=True, timeout=1200,
                       stdin=subprocess.DEVNULL if stdin.startswith("!") else None)
    took = time.time() - t0
    if r.returncode != 0:
        print(f"!!! FAILED {title} (exit {r.returncode}, {took:.1f} s)\n--- example as run:\n{body}\n--- output:\n"
              f"{r.stdout[-4000:]}{r.stderr[-4000:]}", flush=True)
        return False
    print(f"-- ok ({took:.1f} s) {title}", flush=True)
    return True


def in_namespace():
    for d in SCRATCH_DIRS:
        os.makedirs(d, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=755", "tmpfs", d], check=True)
    os.chmod("/root", 0o700)
    sandbox = tempfile.mkdtemp(prefix="veilfs-doc-examples.")
    os.chmod(sandbox, 0o755)
    fstab = os.path.join(sandbox, "fstab")
    open(fstab, "w").close()
    subprocess.run(["mount", "--bind", fstab, "/etc/fstab"], check=True)
    env = {"HOME": os.path.join(sandbox, "home"), "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
           "LANG": "C.UTF-8", "TERM": "dumb"}
    os.makedirs(env["HOME"])
    if shutil.which("sudo") is None:  # root needs no sudo; the examples say it for everyone else
        shim = os.path.join(sandbox, "bin")
        os.makedirs(shim)
        with open(os.path.join(shim, "sudo"), "w") as f:
            f.write('#!/bin/sh\nexec "$@"\n')
        os.chmod(os.path.join(shim, "sudo"), 0o755)
        env["PATH"] = shim + ":" + env["PATH"]
        print("   (no sudo here: running as root, `sudo CMD` runs CMD)")

    examples = readme_examples(os.path.join(REPO, "README.md"))
    for page in ("veilfs.1", "veilkey.1"):
        examples += man_examples(os.path.join(REPO, "man", page))
    ok, unknown, ran, skipped = True, [], 0, 0
    for doc, text, is_fstab in examples:
        key = entry_for(text)
        if key is None:
            unknown.append(f"{doc}: {text.splitlines()[0]}")
            continue
    if unknown:
        print("!!! FAILED: examples that this test does not know (add each to EXAMPLES in "
              "tests/package/doc_examples.py, with what it needs and what must hold):\n    " + "\n    ".join(unknown))
        return 1
    try:
        for doc, text, is_fstab in examples:
            key = entry_for(text)
            skipped += "skip" in EXAMPLES[key]
            ran += "skip" not in EXAMPLES[key]
            if not run_example(doc, text, is_fstab, key, env, fstab):
                ok = False
                break
    finally:
        subprocess.run(["bash", "-c", "for m in $(awk '$3 ~ /^fuse/ {print $2}' /proc/self/mounts); do "
                        "fusermount3 -u \"$m\" 2>/dev/null || umount -l \"$m\"; done"], env=env)
        if subprocess.run(["dpkg-query", "-W", "veilfs"], capture_output=True).returncode == 0:
            print("-- cleanup: purging the package")
            subprocess.run(["apt-get", "purge", "-y", "-qq", "veilfs"], env={**env, "DEBIAN_FRONTEND": "noninteractive"},
                           stdout=subprocess.DEVNULL)
        subprocess.run(["umount", "/etc/fstab"])
        shutil.rmtree(sandbox, ignore_errors=True)
    print(f"-- {len(examples)} examples: {ran} run, {skipped} skipped (said above)" + ("" if ok else "; FAILED"))
    return 0 if ok else 1


def main():
    if sys.argv[1:] == ["--list"]:  # what would run, under which entry
        examples = readme_examples(os.path.join(REPO, "README.md"))
        for page in ("veilfs.1", "veilkey.1"):
            examples += man_examples(os.path.join(REPO, "man", page))
        for doc, text, is_fstab in examples:
            key = entry_for(text)
            print(f"{doc} [{'fstab' if is_fstab else 'sh'}] -> {key!r}\n    " + text.replace("\n", "\n    "))
        return 0 if all(entry_for(t) for _, t, _ in examples) else 1
    if os.geteuid() != 0:
        print("!!! FAILED: the examples install a package and mount from /etc/fstab: run as root", file=sys.stderr)
        return 1
    if os.environ.get("VEILFS_DOC_NS") != "1":
        if REPO.startswith("/root") or REPO.startswith("/usr/local") or REPO.startswith("/srv"):
            print(f"!!! FAILED: {REPO} would be hidden by the scratch tmpfs over {SCRATCH_DIRS}", file=sys.stderr)
            return 1
        if subprocess.run(["dpkg-query", "-W", "veilfs"], capture_output=True).returncode == 0:
            print("!!! FAILED: a veilfs package is installed already; this test installs and purges its own",
                  file=sys.stderr)
            return 1
        env = {**os.environ, "VEILFS_DOC_NS": "1"}
        return subprocess.run(["unshare", "--mount", "--propagation", "private", sys.executable,
                               os.path.realpath(__file__)], env=env).returncode
    return in_namespace()


if __name__ == "__main__":
    sys.exit(main())
