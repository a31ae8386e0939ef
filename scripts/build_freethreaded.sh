#!/usr/bin/env bash
# Build a free-threaded CPython 3.13 (configure --disable-gil) from Debian's python3.13 source
# package into .cache/python3.13t (ignored by git). Idempotent: a working build is left alone.
#
# Steps: check the tools -> find the python3.13 source package (adding a deb-src entry for a
# suite that carries it when apt has none) -> download it with `apt-get source --download-only`
# -> install the one build dependency the servers need (zlib) -> configure, make, altinstall
# -> check that the GIL is really off.
#
# The upstream tarball of the source package is built as released (Debian's patches adapt the
# layout to /usr and are not wanted for a private prefix).
#
# Environment: FT_PREFIX (install folder), FT_WORK (build folder), FT_JOBS (make -j),
# FT_CONFIGURE_EXTRA (more configure options, e.g. --enable-optimizations: much slower),
# FT_SUITES (Debian suites to look in for python3.13 when apt has no source for it),
# FT_KEEP_BUILD=1 (keep the unpacked, built source tree; removed by default: ~0.5 GB).
# To start over, delete .cache/python3.13t-build (the downloaded source) and .cache/python3.13t.
set -Eeuo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PREFIX="${FT_PREFIX:-$REPO/.cache/python3.13t}"
WORK="${FT_WORK:-$REPO/.cache/python3.13t-build}"
JOBS="${FT_JOBS:-$(nproc 2>/dev/null || echo 2)}"
SUITES="${FT_SUITES:-trixie}"
BIN="$PREFIX/bin/python3.13t"
LOG="$WORK/build.log"
SRC_LIST="/etc/apt/sources.list.d/concbench-python3.13-src.sources"
PROBE='import sys, zlib; print(sys._is_gil_enabled())'
STEP="starting"
START=$SECONDS

say() { printf '[freethreaded %4ds] %s\n' "$((SECONDS - START))" "$*"; }
die() {
    printf '[freethreaded] ERROR: %s\n' "$*" >&2
    exit 1
}
on_error() {
    local status=$?
    printf '[freethreaded] ERROR: step "%s" failed (exit %d).\n' "$STEP" "$status" >&2
    if [[ -s "$LOG" ]]; then
        printf '[freethreaded] last lines of %s:\n' "$LOG" >&2
        tail -n 25 "$LOG" >&2
    fi
    exit "$status"
}
trap on_error ERR

is_root() { [[ "$(id -u)" -eq 0 ]]; }

# The built interpreter runs, imports zlib (WORK needs it) and reports the GIL off.
already_built() {
    [[ -x "$BIN" ]] && [[ "$(timeout 20 "$BIN" -c "$PROBE" 2>/dev/null)" == "False" ]]
}

need_root_for() {
    is_root || die "$1 needs root (apt-get). Run as root, or do it yourself: $2"
}

check_tools() {
    STEP="checking the build tools"
    local missing=()
    command -v cc >/dev/null || missing+=(build-essential)
    command -v make >/dev/null || missing+=(make)
    command -v xz >/dev/null || missing+=(xz-utils)
    command -v apt-get >/dev/null || die "apt-get not found: this script needs a Debian-like system."
    if ((${#missing[@]})); then
        need_root_for "installing ${missing[*]}" "apt-get install ${missing[*]}"
        say "installing the build tools: ${missing[*]}"
        apt-get install -y --no-install-recommends "${missing[@]}" >>"$LOG" 2>&1 \
            || die "could not install ${missing[*]} with apt-get (see $LOG)."
    fi
}

has_source_record() {
    apt-cache showsrc python3.13 2>/dev/null | grep -q '^Package: python3.13$'
}

# The mirror URI apt already uses for Debian's main archive (so no new host is contacted).
debian_mirror() {
    local uri
    uri="$(grep -hoE '(https?://[^ ]+/debian)/?( |$)' /etc/apt/sources.list \
        /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list 2>/dev/null \
        | head -n 1 | tr -d ' ')" || true
    echo "${uri:-http://deb.debian.org/debian}"
}

add_deb_src() {
    local suite="$1"
    need_root_for "adding a deb-src entry for $suite" \
        "add a 'Types: deb-src' entry for suite $suite to /etc/apt/sources.list.d/"
    say "apt has no source for python3.13; adding deb-src for suite '$suite' ($SRC_LIST)"
    cat >"$SRC_LIST" <<EOF
# Added by concbench scripts/build_freethreaded.sh: Debian source packages only (python3.13).
Types: deb-src
URIs: $(debian_mirror)
Suites: $suite
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
}

# apt-get update; on failure, print apt's own error lines and return non-zero.
apt_update() {
    say "apt-get update"
    local out status=0
    out="$(apt-get update 2>&1)" || status=$?
    printf '%s\n' "$out" >>"$LOG"
    if ((status)) || grep -q '^E:' <<<"$out"; then
        grep -E '^(E|W):' <<<"$out" | tail -n 3 >&2 || true
        return 1
    fi
}

find_source_package() {
    STEP="finding the python3.13 source package"
    has_source_record && return 0
    local suite
    for suite in $SUITES; do
        grep -qs "^Suites: $suite\$" "$SRC_LIST" || add_deb_src "$suite"
        if apt_update && has_source_record; then
            return 0
        fi
        # never leave apt with an entry that does not work: other tools run apt-get update too
        say "no python3.13 source from suite '$suite' (mirror unreachable or no such package);" \
            "removing $SRC_LIST"
        rm -f "$SRC_LIST"
        apt_update >/dev/null 2>&1 || true
    done
    die "could not get python3.13's source package from Debian (tried suites: $SUITES; this" \
        "system is $(. /etc/os-release && echo "$PRETTY_NAME"), which has no python3.13 of its" \
        "own). Check that the Debian mirror is reachable, or set FT_SUITES to a suite that has it."
}

find_orig() {
    find "$WORK/src" -maxdepth 1 -name 'python3.13_*.orig.tar.*' ! -name '*.asc' 2>/dev/null \
        | head -n 1
}

# apt-get source checks the files against the signed Sources index.
download_source() {
    find_source_package
    STEP="downloading the python3.13 source package"
    local version
    version="$(apt-cache showsrc python3.13 | awk '/^Version:/ {print $2; exit}')"
    say "downloading python3.13 $version source package"
    mkdir -p "$WORK/src"
    (cd "$WORK/src" && apt-get source --download-only python3.13) >>"$LOG" 2>&1 \
        || die "apt-get source python3.13 failed: is the Debian mirror reachable? (see $LOG)"
}

# The upstream tarball of the source package, unpacked (downloaded first when not yet here).
fetch_source() {
    local tree
    if [[ -s "$WORK/.tree" && -x "$(cat "$WORK/.tree")/configure" ]]; then
        say "source already unpacked: $(cat "$WORK/.tree")"
        return 0
    fi
    local orig
    orig="$(find_orig)"
    if [[ -n "$orig" ]]; then
        say "source package already downloaded: $(basename "$orig")"
    else
        download_source
        orig="$(find_orig)"
    fi
    [[ -n "$orig" ]] || die "the downloaded source package has no upstream tarball (in $WORK/src)."
    STEP="unpacking $orig"
    say "unpacking $(basename "$orig")"
    rm -rf "$WORK"/Python-3.13*
    tar -xf "$orig" -C "$WORK"
    tree="$(find "$WORK" -maxdepth 1 -type d -name 'Python-3.13*' | head -n 1)"
    [[ -n "$tree" && -x "$tree/configure" ]] || die "unexpected layout in $orig: no Python-3.13*/"
    echo "$tree" >"$WORK/.tree"
}

# zlib is the only library module the servers need (WORK's crc32); the rest is built in.
install_build_deps() {
    STEP="installing build dependencies"
    if dpkg -s zlib1g-dev >/dev/null 2>&1; then
        return 0
    fi
    need_root_for "installing zlib1g-dev" "apt-get install zlib1g-dev"
    say "installing zlib1g-dev"
    apt-get install -y --no-install-recommends zlib1g-dev >>"$LOG" 2>&1 \
        || die "could not install zlib1g-dev with apt-get (see $LOG)."
}

build() {
    local tree
    tree="$(cat "$WORK/.tree")"
    cd "$tree"
    STEP="configure"
    say "configure --disable-gil --prefix=$PREFIX (log: $LOG)"
    # shellcheck disable=SC2086  # FT_CONFIGURE_EXTRA is a list of options
    ./configure --disable-gil --prefix="$PREFIX" --without-ensurepip \
        ${FT_CONFIGURE_EXTRA:-} >>"$LOG" 2>&1
    STEP="make -j$JOBS"
    say "make -j$JOBS (the long step: minutes)"
    make -j"$JOBS" >>"$LOG" 2>&1
    STEP="make altinstall"
    say "make altinstall"
    make altinstall >>"$LOG" 2>&1
}

verify() {
    STEP="verifying $BIN"
    [[ -x "$BIN" ]] || die "the build finished but $BIN is missing (see $LOG)."
    local gil
    gil="$(timeout 20 "$BIN" -c "$PROBE" 2>&1)" \
        || die "$BIN does not run or lacks zlib: $gil (see $LOG)"
    [[ "$gil" == "False" ]] || die "$BIN reports sys._is_gil_enabled() = $gil, expected False."
}

main() {
    if already_built; then
        say "already built: $BIN ($("$BIN" -VV | head -n 1)), GIL disabled"
        return 0
    fi
    mkdir -p "$WORK"
    : >"$LOG"
    check_tools
    fetch_source
    install_build_deps
    build
    verify
    if [[ -z "${FT_KEEP_BUILD:-}" ]]; then
        say "removing the build tree (keeping the downloaded source in $WORK/src)"
        rm -rf "$(cat "$WORK/.tree")" "$WORK/.tree"
    fi
    say "done in $((SECONDS - START)) s: $BIN ($("$BIN" -VV | head -n 1)), GIL disabled"
}

main "$@"
