#!/usr/bin/env python3
"""Writes the worker container's least-privilege seccomp profile.

    docker/seccomp-profile.py [OUT]     (default: /var/cache/offload-docker/seccomp-offload.json)

The profile is Docker's default one plus an unconditional allow of the system calls the
worker's sandbox needs to make its own namespaces without any added capability: clone,
clone3, unshare, mount, umount2, pivot_root (../shared/MEASURED.md: the least privilege that
worked). Use it with `docker run --security-opt seccomp=OUT`.

Docker's default profile is not copied into this repository: it is taken from Debian's
package golang-github-docker-docker-dev (the source of the docker.io engine, 20.10 on
bookworm), fetched with `apt-get download` into a temporary directory. The default profile
allows `clone` only with no namespace flag (an argument filter) and answers `clone3` with
ENOSYS unless the container has CAP_SYS_ADMIN; both rules are removed for the added
syscalls, so that nothing but the unconditional allow applies to them.
"""

import json
import os
import subprocess
import sys
import tempfile

PACKAGE = "golang-github-docker-docker-dev"
DEFAULT_JSON = (
    "usr/share/gocode/src/github.com/docker/docker/profiles/seccomp/default.json"
)
ADDED = ["clone", "clone3", "unshare", "mount", "umount2", "pivot_root"]
DEFAULT_OUT = "/var/cache/offload-docker/seccomp-offload.json"


def run(argv, cwd=None):
    """Runs argv; its stdout, or exits with its stderr."""
    p = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"seccomp-profile.py: {' '.join(argv)}: {p.stderr.strip()}")
    return p.stdout


def download(tmp):
    """The package's .deb in tmp (apt's lists are refreshed once if it is not found)."""
    # As root, apt would drop to the _apt user, which cannot write a private temp dir.
    argv = ["apt-get", "-o", "APT::Sandbox::User=root", "download", PACKAGE]
    if subprocess.run(argv, cwd=tmp, capture_output=True).returncode != 0:
        run(["apt-get", "update", "-qq"])
        run(argv, cwd=tmp)
    debs = [f for f in os.listdir(tmp) if f.endswith(".deb")]
    if len(debs) != 1:
        sys.exit(f"seccomp-profile.py: expected one .deb of {PACKAGE}, got {debs}")
    return os.path.join(tmp, debs[0])


def default_profile():
    """Docker's default profile, from the Debian package, and the package's version."""
    with tempfile.TemporaryDirectory(prefix="offload-seccomp-") as tmp:
        deb = download(tmp)
        version = run(["dpkg-deb", "-f", deb, "Version"]).strip()
        run(["dpkg-deb", "-x", deb, os.path.join(tmp, "x")])
        with open(os.path.join(tmp, "x", DEFAULT_JSON)) as f:
            return json.load(f), version


def with_namespaces(profile):
    """profile plus an unconditional allow of ADDED, no other rule naming them."""
    rules = []
    for rule in profile["syscalls"]:
        names = [n for n in rule["names"] if n not in ADDED]
        if names:
            rules.append({**rule, "names": names})
    rules.append(
        {
            "names": ADDED,
            "action": "SCMP_ACT_ALLOW",
            "comment": "offload: the worker's sandbox makes its own namespaces "
            "(docker/seccomp-profile.py)",
        }
    )
    return {**profile, "syscalls": rules}


def engine_version():
    """The Docker engine's version, or None without a daemon."""
    p = subprocess.run(
        ["docker", "version", "--format", "{{.Server.Version}}"],
        capture_output=True,
        text=True,
    )
    return p.stdout.strip() if p.returncode == 0 else None


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_OUT
    profile, version = default_profile()
    engine = engine_version()
    # Both look like 20.10.24+dfsg1…: the default profile belongs to its engine's release.
    if engine and engine.split("+")[0] != version.split("+")[0]:
        print(
            f"seccomp-profile.py: warning: {PACKAGE} {version} is not the engine's "
            f"release ({engine}); its default profile may differ",
            file=sys.stderr,
        )
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    tmp = out + ".part"
    with open(tmp, "w") as f:
        json.dump(with_namespaces(profile), f, indent=1)
        f.write("\n")
    os.replace(tmp, out)
    print(f"{out}: Docker's default seccomp profile ({PACKAGE} {version}) + {', '.join(ADDED)}")


if __name__ == "__main__":
    main()
