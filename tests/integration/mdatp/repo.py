"""What the mdatp role test needs besides Ansible: a stand-in ``mdatp`` package in a signed APT repository laid
out as packages.microsoft.com is, served over HTTP; onboarding/offboarding packages as the portal gives them; and a
disposable Debian root (an overlay over a debootstrap'd one cached under .build/mdatp) reached with ``chroot``.

Nothing here touches the test machine's own packages: the only package it may install on the machine is
debootstrap itself (``apt-get install -y debootstrap``) when it is missing.
"""
import contextlib
import gzip
import hashlib
import http.server
import json
import os
import shutil
import subprocess
import tempfile
import threading
import urllib.parse
import zipfile
from email.utils import formatdate
from functools import partial

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
CACHE = os.path.join(ROOT, ".build", "mdatp")
SUITE = "bookworm"
MIRROR = os.environ.get("MDATP_TEST_MIRROR", "http://deb.debian.org/debian")
CHANNEL_DISTS = {"prod": SUITE, "insiders-slow": "insiders-slow", "insiders-fast": "insiders-fast"}


def run(*args, **kw):
    return subprocess.run(list(args), check=True, capture_output=True, text=True, **kw)


# -- the cached Debian root -----------------------------------------------------------------------------------
def base_root():
    """A minbase Debian 12 with python3 and python3-apt, made once (debootstrap, ~1 min) and reused."""
    path = os.path.join(CACHE, "rootfs-" + SUITE)
    if os.path.isfile(os.path.join(path, "usr", "bin", "python3")):
        return path
    if not shutil.which("debootstrap"):
        run("apt-get", "install", "-y", "--no-install-recommends", "debootstrap")
    tmp = path + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(CACHE, exist_ok=True)
    run("debootstrap", "--variant=minbase", "--include=python3,python3-apt", SUITE, tmp, MIRROR)
    os.rename(tmp, path)
    return path


@contextlib.contextmanager
def disposable_root(workdir):
    """An overlay over the cached root: writes land in ``workdir`` and vanish with it; /proc mounted inside."""
    lower = base_root()
    upper, work, merged = (os.path.join(workdir, d) for d in ("upper", "work", "root"))
    for d in (upper, work, merged):
        os.makedirs(d)
    run("mount", "-t", "overlay", "overlay", "-o", "lowerdir=%s,upperdir=%s,workdir=%s" % (lower, upper, work), merged)
    try:
        run("mount", "-t", "proc", "proc", os.path.join(merged, "proc"))
        try:
            yield merged
        finally:
            run("umount", "-l", os.path.join(merged, "proc"))
    finally:
        run("umount", "-l", merged)


# -- the stand-in package and its repository --------------------------------------------------------------------
def build_deb(out_dir, version):
    pkg = tempfile.mkdtemp(dir=out_dir)
    os.makedirs(os.path.join(pkg, "DEBIAN"))
    os.makedirs(os.path.join(pkg, "usr", "bin"))
    with open(os.path.join(HERE, "mdatp_cli.py")) as f:
        cli = "#!/usr/bin/python3\n" + f.read().replace("@VERSION@", version)  # the package adds the interpreter line
    with open(os.path.join(pkg, "usr", "bin", "mdatp"), "w") as f:
        f.write(cli)
    os.chmod(os.path.join(pkg, "usr", "bin", "mdatp"), 0o755)
    with open(os.path.join(pkg, "DEBIAN", "control"), "w") as f:
        f.write("Package: mdatp\nVersion: %s\nArchitecture: all\nMaintainer: defender.endpoint tests <tests@example.invalid>\n"
                "Depends: python3\nSection: utils\nPriority: optional\n"
                "Description: stand-in for Microsoft Defender for Endpoint (tests only)\n" % version)
    deb = os.path.join(out_dir, "mdatp_%s_all.deb" % version)
    run("dpkg-deb", "--root-owner-group", "-Zgzip", "--build", pkg, deb)
    shutil.rmtree(pkg)
    return deb


def _hashes(path):
    with open(path, "rb") as f:
        data = f.read()
    return len(data), hashlib.md5(data).hexdigest(), hashlib.sha256(data).hexdigest()   # noqa: S324 (apt's format)


def build_repo(top, versions, gnupghome):
    """packages.microsoft.com's layout for Debian 12: debian/12/prod/dists/<bookworm|insiders-*>/main/binary-*."""
    repo = os.path.join(top, "debian", "12", "prod")
    pool = os.path.join(repo, "pool", "main", "m", "mdatp")
    os.makedirs(pool)
    stanzas = []
    for version in versions:
        deb = build_deb(pool, version)
        control = run("dpkg-deb", "-f", deb).stdout.strip()
        size, md5, sha = _hashes(deb)
        stanzas.append("%s\nFilename: %s\nSize: %d\nMD5sum: %s\nSHA256: %s\n" % (
            control, os.path.relpath(deb, repo), size, md5, sha))
    for dist in CHANNEL_DISTS.values():
        files = []
        for arch in ("amd64", "arm64", "armhf"):
            rel = "main/binary-%s/Packages" % arch
            path = os.path.join(repo, "dists", dist, rel)
            os.makedirs(os.path.dirname(path))
            with open(path, "w") as f:
                f.write("\n".join(stanzas))
            with open(path, "rb") as src, gzip.open(path + ".gz", "wb") as dst:
                dst.write(src.read())
            files += [rel, rel + ".gz"]
        release = os.path.join(repo, "dists", dist, "Release")
        lines = ["Origin: defender.endpoint tests", "Label: mdatp stand-in", "Suite: " + dist, "Codename: " + dist,
                 "Date: " + formatdate(usegmt=True), "Architectures: amd64 arm64 armhf", "Components: main", "SHA256:"]
        for rel in files:
            size, _md5, sha = _hashes(os.path.join(repo, "dists", dist, rel))
            lines.append(" %s %d %s" % (sha, size, rel))
        with open(release, "w") as f:
            f.write("\n".join(lines) + "\n")
        run("gpg", "--homedir", gnupghome, "--batch", "--yes", "--clearsign", "-o",
            os.path.join(repo, "dists", dist, "InRelease"), release)
    os.makedirs(os.path.join(top, "keys"))
    key = run("gpg", "--homedir", gnupghome, "--armor", "--export").stdout
    with open(os.path.join(top, "keys", "microsoft.asc"), "w") as f:
        f.write(key)
    return top


def signing_key(gnupghome):
    os.makedirs(gnupghome, mode=0o700)
    run("gpg", "--homedir", gnupghome, "--batch", "--passphrase", "", "--quick-gen-key",
        "mdatp stand-in repository <tests@example.invalid>", "ed25519", "sign", "never")


@contextlib.contextmanager
def serve(directory):
    """An HTTP server on 127.0.0.1 (the chroot shares the machine's network) serving ``directory``."""
    handler = partial(Handler, directory=directory)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield "http://127.0.0.1:%d" % server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


class Handler(http.server.SimpleHTTPRequestHandler):
    """Serves the directory; an absolute-URL request (as to a proxy) is served the same, and logged as such."""
    requests = []

    def translate_path(self, path):
        parts = urllib.parse.urlsplit(path)
        return super().translate_path(parts.path if parts.scheme else path)

    def log_message(self, fmt, *args):
        Handler.requests.append(self.path)


# -- onboarding / offboarding packages ---------------------------------------------------------------------------
def _package_json(kind, org_id):
    """The shape of the portal's mdatp_onboard.json / mdatp_offboard.json: a signed, twice-encoded JSON body."""
    body = json.dumps({"orgId": org_id, "geoLocationUrl": "https://edr-cus.endpoint.security.microsoft.com/edr/",
                       "datacenter": "CentralUs", "vortexGeoLocation": "US", "version": "1.7"})
    info = {"body": body, "sig": "c3RhbmQtaW4=", "sha256sig": "c3RhbmQtaW4=", "cert": "c3RhbmQtaW4="}
    return json.dumps({kind + "Info": json.dumps(info)}, indent=2)


def onboarding_zip(path, org_id):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("mdatp_onboard.json", _package_json("onboarding", org_id))
    return path


def offboarding_json(path, org_id):
    with open(path, "w") as f:
        f.write(_package_json("offboarding", org_id))
    return path
