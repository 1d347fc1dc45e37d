#!/usr/bin/env bash
# Build the offload worker image(s): offload-worker:amd64 and/or offload-worker:arm64.
#
#   docker/build.sh [amd64|arm64|all]     (default: amd64; must run as root on a Debian host)
#
# Steps, per architecture:
#   1. install what the host lacks (debootstrap; for a foreign arch qemu-user-static,
#      binfmt-support, the C cross compiler and the Rust target);
#   2. build the offload binary for the arch (cargo, cross-linking when foreign);
#   3. debootstrap a bookworm minbase root from the host's Debian mirror, cached as
#      /var/cache/offload-docker/rootfs-bookworm-ARCH.tar (reused if present;
#      REFRESH_ROOTFS=1 rebuilds it);
#   4. docker build docker/Dockerfile (FROM scratch + ADD rootfs.tar) with the legacy builder,
#      which labels the image with the right platform (docker import would say amd64).
# Then it writes the least-privilege seccomp profile (docker/seccomp-profile.py) to
# /var/cache/offload-docker/seccomp-offload.json.
# No container registry is used.
set -euo pipefail

SUITE=bookworm
CACHE=${OFFLOAD_DOCKER_CACHE:-/var/cache/offload-docker}
IMAGE=${OFFLOAD_IMAGE:-offload-worker}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
# cargo's own default, or where CARGO_TARGET_DIR sends it.
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'build.sh: %s\n' "$*" >&2; exit 1; }

usage() { echo "usage: $0 [amd64|arm64|all]" >&2; exit 2; }
case "${1:-amd64}" in
    amd64) ARCHES=(amd64) ;;
    arm64) ARCHES=(arm64) ;;
    all) ARCHES=(amd64 arm64) ;;
    -h|--help) usage ;;
    *) usage ;;
esac

[[ $EUID -eq 0 ]] || die "run as root (debootstrap and apt-get need it)"
command -v docker >/dev/null || die "docker is not installed"
command -v cargo >/dev/null || die "cargo is not installed (rustup)"
HOST_ARCH=$(dpkg --print-architecture)

# ---------------------------------------------------------------------------------------
# Host packages

APT_UPDATED=0
need_pkgs() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    ((${#missing[@]})) || return 0
    log "installing on the host: ${missing[*]}"
    if ((!APT_UPDATED)); then apt-get update -qq; APT_UPDATED=1; fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

deb_arch_gnu() { # Debian arch -> GNU triplet
    case "$1" in amd64) echo x86_64-linux-gnu ;; arm64) echo aarch64-linux-gnu ;; *) die "unsupported arch $1" ;; esac
}
deb_arch_rust() {
    case "$1" in amd64) echo x86_64-unknown-linux-gnu ;; arm64) echo aarch64-unknown-linux-gnu ;; *) die "unsupported arch $1" ;; esac
}
deb_arch_qemu() {
    case "$1" in amd64) echo x86_64 ;; arm64) echo aarch64 ;; *) die "unsupported arch $1" ;; esac
}

# Run foreign binaries (debootstrap's second stage, RUN apt-get in the Dockerfile) via qemu.
enable_binfmt() {
    local q; q=$(deb_arch_qemu "$1")
    need_pkgs qemu-user-static binfmt-support
    if [[ ! -e /proc/sys/fs/binfmt_misc/status ]]; then
        mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
    fi
    if ! grep -qx enabled "/proc/sys/fs/binfmt_misc/qemu-$q" 2>/dev/null; then
        update-binfmts --enable "qemu-$q"
    fi
    grep -qx enabled "/proc/sys/fs/binfmt_misc/qemu-$q" || die "could not enable binfmt for qemu-$q"
    # The F flag makes the kernel open the interpreter now, so it also works in containers.
    grep -q '^flags:.*F' "/proc/sys/fs/binfmt_misc/qemu-$q" \
        || echo "build.sh: warning: qemu-$q binfmt entry lacks the F flag; RUN steps may fail" >&2
}

# ---------------------------------------------------------------------------------------
# The host's Debian mirror, from /etc/apt/sources.list{,.d/*.list,.d/*.sources}

apt_uri_for_suite() { # print the first enabled "deb" URI serving $1
    local suite=$1 f
    {
        for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
            [[ -f $f ]] || continue
            awk -v s="$suite" '
                $1 == "deb" {
                    i = 2
                    if ($i ~ /^\[/) { while (i < NF && $i !~ /\]$/) i++; i++ }
                    if ($(i + 1) == s) { print $i; exit }
                }' "$f"
        done
        for f in /etc/apt/sources.list.d/*.sources; do
            [[ -f $f ]] || continue
            awk -v s="$suite" 'BEGIN { RS = ""; FS = "\n" }
                {
                    uri = ""; ok = 0; deb = 1; on = 1
                    for (j = 1; j <= NF; j++) {
                        l = $j
                        if (l ~ /^#/) continue
                        if (l ~ /^URIs:/) { sub(/^URIs:[ \t]*/, "", l); split(l, a, /[ \t]+/); uri = a[1] }
                        else if (l ~ /^Suites:/) {
                            sub(/^Suites:[ \t]*/, "", l); n = split(l, a, /[ \t]+/)
                            for (k = 1; k <= n; k++) if (a[k] == s) ok = 1
                        }
                        else if (l ~ /^Types:/ && l !~ /[ \t]deb([ \t]|$)/) deb = 0
                        else if (l ~ /^Enabled:[ \t]*[Nn]o/) on = 0
                    }
                    if (ok && deb && on && uri != "") { print uri; exit }
                }' "$f"
        done
    } | head -n1 | sed 's:/*$::'
}

MIRROR=${OFFLOAD_DEBIAN_MIRROR:-$(apt_uri_for_suite "$SUITE")}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SECURITY=${OFFLOAD_DEBIAN_SECURITY:-$(apt_uri_for_suite "$SUITE-security")}
SECURITY=${SECURITY:-http://deb.debian.org/debian-security}

# ---------------------------------------------------------------------------------------
# Steps

build_binary() { # $1 = Debian arch; prints the path of the built binary
    local arch=$1 rt gnu
    rt=$(deb_arch_rust "$arch")
    if [[ $arch == "$HOST_ARCH" ]]; then
        log "[$arch] cargo build --release -p offload"
        (cd "$ROOT" && cargo build --release -p offload) >&2
        echo "$TARGET/release/offload"
        return
    fi
    gnu=$(deb_arch_gnu "$arch")
    need_pkgs "gcc-$gnu" "libc6-dev-$arch-cross"
    if ! rustup target list --installed | grep -qx "$rt"; then
        log "[$arch] rustup target add $rt"
        rustup target add "$rt" >&2
    fi
    local up=${rt^^}; up=${up//-/_}
    log "[$arch] cargo build --release -p offload --target $rt"
    (
        cd "$ROOT"
        export "CARGO_TARGET_${up}_LINKER=$gnu-gcc"
        export "CC_${rt//-/_}=$gnu-gcc" "CXX_${rt//-/_}=$gnu-g++" "AR_${rt//-/_}=$gnu-ar"
        cargo build --release -p offload --target "$rt"
    ) >&2
    echo "$TARGET/$rt/release/offload"
}

build_rootfs() { # $1 = Debian arch; prints the path of the cached tarball
    local arch=$1 tar dir
    tar=$CACHE/rootfs-$SUITE-$arch.tar
    if [[ -s $tar && ${REFRESH_ROOTFS:-0} != 1 ]]; then
        log "[$arch] reusing $tar"
        echo "$tar"
        return
    fi
    need_pkgs debootstrap
    mkdir -p "$CACHE"
    dir=$CACHE/rootfs-$SUITE-$arch.d
    if [[ -d $dir ]]; then
        umount -R "$dir"/* 2>/dev/null || true
        rm -rf --one-file-system "$dir"
    fi
    log "[$arch] debootstrap --arch=$arch --variant=minbase $SUITE ($MIRROR)"
    debootstrap --arch="$arch" --variant=minbase "$SUITE" "$dir" "$MIRROR" >&2 \
        || { tail -n 30 "$dir/debootstrap/debootstrap.log" >&2 2>/dev/null || true; die "debootstrap failed"; }
    # Trim what an image does not need; apt-get update runs in the Dockerfile.
    rm -rf "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/archives/*.deb "$dir"/var/cache/apt/*.bin \
        "$dir"/var/log/* "$dir"/tmp/* "$dir"/var/tmp/*
    : > "$dir/etc/hostname"
    tar --numeric-owner --xattrs --xattrs-include='*' -C "$dir" -cf "$tar.part" .
    mv -f "$tar.part" "$tar"
    rm -rf --one-file-system "$dir"
    echo "$tar"
}

build_image() {
    local arch=$1 bin tar ctx extra=""
    local t0=$SECONDS
    [[ $arch == "$HOST_ARCH" ]] || enable_binfmt "$arch"
    bin=$(build_binary "$arch")
    [[ -x $bin ]] || die "no binary at $bin"
    tar=$(build_rootfs "$arch")

    ctx=$CACHE/context-$arch
    rm -rf "$ctx"; mkdir -p "$ctx"
    ln "$tar" "$ctx/rootfs.tar" 2>/dev/null || cp "$tar" "$ctx/rootfs.tar"
    cp "$bin" "$ctx/offload"
    cp "$HERE/Dockerfile" "$ctx/Dockerfile"
    cat > "$ctx/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY $SUITE-security main
EOF
    if [[ $arch == arm64 ]]; then
        # For x86_64 hosts: their gcc/g++ run here as cross compilers (clang-14 targets x86_64 natively).
        extra="gcc-12-x86-64-linux-gnu g++-12-x86-64-linux-gnu binutils-x86-64-linux-gnu"
    fi

    log "[$arch] docker build -t $IMAGE:$arch"
    DOCKER_BUILDKIT=0 docker build --platform "linux/$arch" \
        --build-arg "EXTRA_PACKAGES=$extra" \
        -t "$IMAGE:$arch" "$ctx" >&2
    rm -rf "$ctx"

    local got
    got=$(docker image inspect -f '{{.Os}}/{{.Architecture}}' "$IMAGE:$arch")
    [[ $got == "linux/$arch" ]] || die "$IMAGE:$arch is labelled $got"
    log "[$arch] done in $((SECONDS - t0)) s"
}

for a in "${ARCHES[@]}"; do
    build_image "$a"
done
# The least-privilege profile to run them with (docker/README.md, "Security posture").
log "seccomp profile: $CACHE/seccomp-offload.json"
python3 "$HERE/seccomp-profile.py" "$CACHE/seccomp-offload.json" >&2

echo
printf '%-24s %-14s %s\n' IMAGE PLATFORM SIZE
for a in "${ARCHES[@]}"; do
    size=$(docker image inspect -f '{{.Size}}' "$IMAGE:$a")
    plat=$(docker image inspect -f '{{.Os}}/{{.Architecture}}' "$IMAGE:$a")
    printf '%-24s %-14s %s MB\n' "$IMAGE:$a" "$plat" "$((size / 1000000))"
done
