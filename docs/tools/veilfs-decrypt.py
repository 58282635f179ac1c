#!/usr/bin/env python3
"""A second, independent veilfs v1 decrypter, written from docs/FORMAT.md alone (no veilfs code).

It proves the format document complete and is a last-resort recovery tool: it lists or extracts a cipher dir
without FUSE and without veilfs. Python 3 standard library plus libsodium through ctypes (libsodium23).

  python3 docs/tools/veilfs-decrypt.py CIPHERDIR [--passfile FILE | --keyfile FILE] [--out DIR]

Without --out it prints every path with its size (or symlink target). Any authentication failure stops with an
error naming the cipher path: this tool never outputs unauthenticated bytes. Section numbers refer to FORMAT.md.
"""
import argparse
import base64
import ctypes
import ctypes.util
import hashlib
import hmac
import json
import os
import sys

_so = ctypes.CDLL(ctypes.util.find_library("sodium") or "libsodium.so.23")
if _so.sodium_init() < 0:
    sys.exit("libsodium failed to initialise")
_ull = ctypes.c_ulonglong


class Damage(Exception):
    pass


# ---- §1, §2: encodings and primitives -------------------------------------------------------------------

def b64u_enc(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def b64u_dec(s):
    if len(s) % 4 == 1 or any(c not in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_" for c in s):
        return None
    d = base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
    return d if b64u_enc(d) == s else None  # canonical spelling only


def hkdf(ikm, salt, info, length):
    prk = hmac.new(salt or bytes(32), ikm, hashlib.sha256).digest()
    out, t, i = b"", b"", 1
    while len(out) < length:
        t = hmac.new(prk, t + info + bytes([i]), hashlib.sha256).digest()
        out, i = out + t, i + 1
    return out[:length]


def blake2b(n, msg, key=b""):
    return hashlib.blake2b(msg, digest_size=n, key=key).digest()


def _aead_open(fn, key, nonce, aad, sealed):
    if len(sealed) < 16:
        return None
    m, mlen = ctypes.create_string_buffer(max(1, len(sealed) - 16)), _ull()
    rc = fn(m, ctypes.byref(mlen), None, sealed, _ull(len(sealed)), aad, _ull(len(aad)), nonce, key)
    return None if rc != 0 else m.raw[:mlen.value]


def xc20p_open(key, nonce, aad, sealed):
    return _aead_open(_so.crypto_aead_xchacha20poly1305_ietf_decrypt, key, nonce, aad, sealed)


def aesgcm_open(key, nonce, aad, sealed):
    if not _so.crypto_aead_aes256gcm_is_available():
        sys.exit("this CPU has no AES-NI: libsodium cannot decrypt an aes256gcm volume here")
    return _aead_open(_so.crypto_aead_aes256gcm_decrypt, key, nonce, aad, sealed)


def xchacha20(key, nonce24, data):
    out = ctypes.create_string_buffer(max(1, len(data)))
    _so.crypto_stream_xchacha20_xor(out, data, _ull(len(data)), nonce24, key)
    return out.raw[:len(data)]


def argon2id(secret, salt, ops, mem):
    out = ctypes.create_string_buffer(32)
    if _so.crypto_pwhash(out, _ull(32), secret, _ull(len(secret)), salt, _ull(ops), ctypes.c_size_t(mem), 2) != 0:
        sys.exit("argon2id failed (out of memory?)")  # 2 = crypto_pwhash_ALG_ARGON2ID13
    return out.raw


class Siv:  # §2.1
    def __init__(self, key):
        self.mac = hkdf(key, b"", b"veilfs v1 siv mac", 32)
        self.enc = hkdf(key, b"", b"veilfs v1 siv enc", 32)

    def open(self, ad, sealed):
        tag = sealed[:16]
        plain = xchacha20(self.enc, tag + b"veilname", sealed[16:])
        return plain if hmac.compare_digest(blake2b(16, ad + plain, self.mac), tag) else None


def unpad16(p):
    if not p or p[-1] == 0 or p[-1] > 16 or p[-p[-1]:] != bytes([p[-1]]) * p[-1]:
        return None
    return p[:-p[-1]]


def canonical_json(obj):  # §4.2: compact, keys sorted
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


# ---- §4, §5: config and keys ----------------------------------------------------------------------------

class Volume:
    def __init__(self, cipherdir, secret):
        raw = open(os.path.join(cipherdir, "veilfs.conf"), "rb").read(65537)
        if len(raw) > 65536:
            raise Damage("veilfs.conf is larger than 64 KiB")
        cfg = json.loads(raw)
        if cfg.get("format") != "veilfs":
            raise Damage("not a veilfs config")
        if cfg["version"] != 1:
            sys.exit(f"format version {cfg['version']} is not supported by this tool")
        body = {k: v for k, v in cfg.items() if k != "checksum"}
        if hashlib.blake2b(canonical_json(body), digest_size=32).hexdigest() != cfg.get("checksum"):
            raise Damage("config checksum mismatch")
        flags = {"authenticated-holes", "derived-dir-iv", "final-block-marker", "long-names"}
        if set(cfg["features"]) != flags:
            sys.exit(f"unsupported feature flags: {sorted(set(cfg['features']) ^ flags)}")
        vid = b64u_dec(cfg["volume_id"])
        master = None
        for slot in cfg["key_slots"]:
            kdf = slot["kdf"]
            if kdf["algorithm"] != "argon2id13" or not (1 <= kdf["opslimit"] <= 64 and 8192 <= kdf["memlimit"] <= 1 << 32):
                raise Damage(f"key slot {slot['id']} has unsupported or out-of-bounds KDF parameters")
            kek = argon2id(secret, b64u_dec(kdf["salt"]), kdf["opslimit"], kdf["memlimit"])
            aad = b"veilfs keyslot v1" + vid + slot["id"].to_bytes(4, "little")
            master = xc20p_open(kek, b64u_dec(slot["nonce"]), aad, b64u_dec(slot["wrapped_key"]))
            if master:
                break
        if not master:
            sys.exit("wrong passphrase or key file: no key slot opens with it")
        params = {k: cfg[k] for k in ("block_size", "cipher", "version", "volume_id")}
        params["features"] = sorted(cfg["features"])
        kpm = hkdf(master, vid, b"veilfs v1 config params mac", 32)
        if not hmac.compare_digest(b64u_enc(blake2b(32, canonical_json(params), kpm)), cfg["params_mac"]):
            raise Damage("config parameters were modified (params_mac mismatch)")

        self.content_key = hkdf(master, vid, b"veilfs v1 content", 32)
        names_key = hkdf(master, vid, b"veilfs v1 names", 32)
        self.names = Siv(names_key)
        self.diriv_key = hkdf(names_key, b"", b"veilfs v1 dir iv derivation", 32)
        self.link_key = hkdf(master, vid, b"veilfs v1 symlinks", 32)
        xattr_key = hkdf(master, vid, b"veilfs v1 xattrs", 32)
        self.xnames = Siv(xattr_key)
        self.xval_key = hkdf(xattr_key, b"", b"veilfs v1 xattr value", 32)
        self.root_iv = hkdf(master, vid, b"veilfs v1 root iv", 16)
        self.B = cfg["block_size"]
        aes = cfg["cipher"] == "aes256gcm"
        self.N, self.open_block = (12, aesgcm_open) if aes else (24, xc20p_open)
        self.O = self.N + 24
        self.S = self.B + self.O

    # ---- §8, §9: names and directory IVs ----
    def decrypt_name(self, iv, encoded):
        if not encoded or len(encoded) > 383:
            return None
        sealed = b64u_dec(encoded)
        if sealed is None or len(sealed) < 32 or (len(sealed) - 16) % 16:
            return None
        padded = self.names.open(iv, sealed)
        name = unpad16(padded) if padded is not None else None
        if name is None or name in (b".", b"..") or b"/" in name or b"\0" in name or not name:
            return None
        return name

    def child_iv(self, dirpath, parent_iv, encoded):
        try:
            iv = open(os.path.join(dirpath, "veilfs.diriv"), "rb").read(17)
            if len(iv) == 16:
                return iv
        except FileNotFoundError:
            pass
        return blake2b(16, parent_iv + encoded.encode(), self.diriv_key)

    # ---- §6, §7: file contents ----
    def decrypt_file(self, path, out):
        B, S, O, N = self.B, self.S, self.O, self.N
        with open(path, "rb") as f:
            b = os.fstat(f.fileno()).st_size
            if b == 0:
                return 0
            header = f.read(20)
            if len(header) < 20 or header[0:4] != b"\x01\x00\x00\x00":
                raise Damage(f"{path}: file header is damaged")
            fid = header[4:]
            key = hkdf(self.content_key, b"", b"veilfs v1 file key" + fid, 32)
            n = -(-(b - 20) // S)

            def slot(i):
                f.seek(20 + i * S)
                return f.read(S)

            def decrypt(i, s):
                if not O < len(s) <= S:
                    raise Damage(f"{path}: block {i} has an impossible size")
                hb = int.from_bytes(s[N:N + 8], "little")
                if hb > i:
                    raise Damage(f"{path}: block {i} failed authentication")
                for flag in ((1,) if i == n - 1 else (0, 1)):  # §6.2: mid-file blocks may carry a stale final flag
                    aad = b"\x01\x00" + fid + i.to_bytes(8, "little") + hb.to_bytes(8, "little") + bytes([flag])
                    plain = self.open_block(key, s[:N], aad, s[N + 8:])
                    if plain is not None:
                        return plain, hb
                raise Damage(f"{path}: block {i} failed authentication (tampered, corrupt or truncated)")

            written = 0
            for i in range(n):
                s = slot(i)
                if i < n - 1 and len(s) == S and not any(s):  # §6.3: a hole needs a claim from the next data block
                    j = next((j for j in range(i + 1, n) if any(slot(j))), None)
                    if j is None or j - decrypt(j, slot(j))[1] > i:
                        raise Damage(f"{path}: block {i} is zeroed but no data block claims it as a hole")
                    plain = bytes(B)
                else:
                    plain = decrypt(i, s)[0]
                if out:
                    out.write(plain)
                written += len(plain)
            expect = (n - 1) * B + max(b - 20 - (n - 1) * S - O, 0)  # §7
            if written != expect:
                raise Damage(f"{path}: size mismatch")
            return written

    # ---- §10, §11 ----
    def decrypt_link(self, dirpath, backing):
        stored = os.readlink(os.path.join(dirpath, backing))
        if stored == "veilfs.longlink":
            stored = open(os.path.join(dirpath, "veilfs.link." + backing)).read(16384)
        sealed = b64u_dec(stored) if len(stored) <= 8192 else None
        target = xc20p_open(self.link_key, sealed[:24], b"veilfs symlink v1", sealed[24:]) if sealed else None
        if target is None:
            raise Damage(f"{os.path.join(dirpath, backing)}: symlink target failed authentication")
        return target

    def decrypt_xattrs(self, path):
        try:
            names = os.listxattr(path, follow_symlinks=False)
        except OSError:
            return {}
        out = {}
        for bname in names:
            if not bname.startswith("user.veilfs."):
                continue
            sealed = b64u_dec(bname[len("user.veilfs."):])
            padded = self.xnames.open(bytes(16), sealed) if sealed and len(sealed) >= 32 else None
            rest = unpad16(padded) if padded is not None else None
            if rest is None:
                continue
            stored = os.getxattr(path, bname, follow_symlinks=False)
            value = xc20p_open(self.xval_key, stored[:24], b"veilfs xattr v1" + bname.encode(), stored[24:])
            if value is None:
                raise Damage(f"{path}: xattr value failed authentication")
            out[b"user." + rest] = value
        return out


def walk(vol, dirpath, iv, rel, outdir):
    """§13 step 4: yields (plain relative path, cipher path, kind) and extracts when outdir is set."""
    for backing in sorted(os.listdir(dirpath)):
        full = os.path.join(dirpath, backing)
        encoded = backing
        if backing.startswith("veilfs."):
            tail = backing[len("veilfs.longname."):]
            if not (backing.startswith("veilfs.longname.") and len(tail) == 43 and "." not in tail):
                continue  # config, IV file, sidecars, temp files
            encoded = open(full + ".name").read(1025)
            if len(encoded) > 1024 or b64u_enc(blake2b(32, encoded.encode())) != tail:
                print(f"warning: {full}: long-name sidecar does not match, skipped", file=sys.stderr)
                continue
        name = vol.decrypt_name(iv, encoded)
        if name is None:
            print(f"warning: {full}: name does not decrypt in this directory, skipped", file=sys.stderr)
            continue
        plain = os.path.join(rel, os.fsdecode(name))
        target = os.path.join(outdir, plain) if outdir else None
        if os.path.islink(full):
            link = vol.decrypt_link(dirpath, backing)
            print(f"{plain} -> {os.fsdecode(link)}")
            if target:
                os.symlink(link, target)
        elif os.path.isdir(full):
            print(f"{plain}/")
            if target:
                os.mkdir(target)
            walk(vol, full, vol.child_iv(full, iv, encoded), plain, outdir)
        elif os.path.isfile(full):
            with (open(target, "wb") if target else open(os.devnull, "wb")) as out:
                size = vol.decrypt_file(full, out)
            print(f"{plain}  {size} bytes")
        else:
            print(f"{plain}  (special file, not extracted)")
            continue
        for xname, value in vol.decrypt_xattrs(full).items():
            print(f"  xattr {os.fsdecode(xname)}: {len(value)} bytes")
            if target and not os.path.islink(target):
                os.setxattr(target, xname, value)


def read_secret(args):
    if args.keyfile:
        return open(args.keyfile, "rb").read()
    raw = open(args.passfile, "rb").read() if args.passfile else sys.stdin.buffer.readline()
    line = raw.split(b"\n", 1)[0]
    return line[:-1] if line.endswith(b"\r") else line


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("cipherdir")
    p.add_argument("--passfile", help="passphrase = first line of FILE (default: one line of stdin)")
    p.add_argument("--keyfile", help="secret = whole contents of FILE")
    p.add_argument("--out", help="extract into this (new) directory instead of listing")
    args = p.parse_args()
    vol = Volume(args.cipherdir, read_secret(args))
    try:  # §9: the root's IV file, else the root IV derived from the master key
        root_iv = open(os.path.join(args.cipherdir, "veilfs.diriv"), "rb").read(17)
    except FileNotFoundError:
        root_iv = vol.root_iv
    if len(root_iv) != 16:
        root_iv = vol.root_iv
    if args.out:
        os.mkdir(args.out)
    try:
        walk(vol, args.cipherdir, root_iv, "", args.out)
    except Damage as e:
        sys.exit(f"damage: {e}")


if __name__ == "__main__":
    main()
