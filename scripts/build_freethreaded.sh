#!/usr/bin/env bash
# Build a free-threaded CPython 3.13 (configure --disable-gil) from Debian's python3.13 source
# package into .cache/python3.13t (ignored by git). Idempotent: a working build is left alone.
#
# Steps: prepare the build folder -> check the tools -> look for a source tree unpacked or a
# source package downloaded by an earlier run -> if none, find the python3.13 source package
# (adding a deb-src entry for a suite that carries it when apt has none) and download it with
# `apt-get source --download-only` -> unpack it -> install the one build dependency the servers
# need (zlib) -> configure, make, altinstall -> check that the GIL is really off.
#
# The upstream tarball of the source package is built as released (Debian's patches adapt the
# layout to /usr and are not wanted for a private prefix).
#
# Environment: FT_PREFIX (install folder), FT_WORK (build folder), FT_JOBS (make -j),
# FT_CONFIGURE_EXTRA (more configure options, e.g. --enable-optimizations: much slower),
# FT_SUITES (Debian suites to look in for python3.13 when apt has no source for it),
# FT_KEEP_BUILD=1 (keep the unpacked, built source tree; removed by default: ~0.5 GB).
# To start over, delete .cache/python3.13t-build (the downloaded source) and .cache/python3.13t.
#
# FT_DRY_RUN=1: check the tools and look for the source (already unpacked, already downloaded,
# or known to apt), say what a real run would do next, and exit 0 before anything that changes
# the system or takes long: no apt-get (install, update, source), no change to apt's sources, no
# download, unpack, configure, make or install, and the build log is left as it is. It only
# creates the (empty) cache folders FT_WORK/src if missing. The tests use it
# (tests/test_build_freethreaded.py); `FT_DRY_RUN=1 make freethreaded` previews a build.
#
# Every step sets STEP first, through step(), so an error names the step that failed.
set -Eeuo pipefail

STEP="starting"
LOG=""
LOG_READY=0 # set once this run has started its own build log: on_error shows only that log

say() { printf '[freethreaded %4ds] %s\n' "$((SECONDS - START))" "$*"; }
die() {
    printf '[freethreaded] ERROR: %s\n' "$*" >&2
    exit 1
}
on_error() {
    local status=$?
    # set -E runs this trap in subshells ($(...), ( ... )) too. There, only pass the status on:
    # a failure that matters fails the command in the main shell, which then reports it (once).
    if ((BASH_SUBSHELL > 0)); then
        exit "$status"
    fi
    printf '[freethreaded] ERROR: step "%s" failed (exit %d).\n' "$STEP" "$status" >&2
    if ((LOG_READY)) && [[ -s "$LOG" ]]; then
        printf '[freethreaded] last lines of %s:\n' "$LOG" >&2
        tail -n 25 "$LOG" >&2 || true
    fi
    exit "$status"
}
START=$SECONDS
trap on_error ERR

# Begin a step: STEP first, so that anything failing in it is reported under its name.
step() {
    STEP="$1"
    say "step: $1"
}

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PREFIX="${FT_PREFIX:-$REPO/.cache/python3.13t}"
WORK="${FT_WORK:-$REPO/.cache/python3.13t-build}"
JOBS="${FT_JOBS:-$(nproc 2>/dev/null || echo 2)}"
SUITES="${FT_SUITES:-trixie}"
BIN="$PREFIX/bin/python3.13t"
LOG="$WORK/build.log"
SRC_LIST="/etc/apt/sources.list.d/concbench-python3.13-src.sources"
PROBE='import sys, zlib; print(sys._is_gil_enabled())'
DRY_RUN="${FT_DRY_RUN:-}"
TREE="" # the unpacked source tree (Python-3.13*/), once known
ORIG="" # the downloaded upstream tarball, once known

dry_run() { [[ -n "$DRY_RUN" && "$DRY_RUN" != 0 ]]; }

is_root() { [[ "$(id -u)" -eq 0 ]]; }

# The built interpreter runs, imports zlib (WORK needs it) and reports the GIL off.
already_built() {
    [[ -x "$BIN" ]] && [[ "$(timeout 20 "$BIN" -c "$PROBE" 2>/dev/null)" == "False" ]]
}

need_root_for() {
    is_root || die "$1 needs root (apt-get). Run as root, or do it yourself: $2"
}

check_tools() {
    step "checking the build tools"
    local missing=()
    command -v cc >/dev/null || missing+=(build-essential)
    command -v make >/dev/null || missing+=(make)
    command -v xz >/dev/null || missing+=(xz-utils)
    command -v apt-get >/dev/null \
        || die "apt-get not found: this script needs a Debian-like system."
    if ((${#missing[@]})) && dry_run; then
        say "dry run: would install the missing build tools: ${missing[*]}"
    elif ((${#missing[@]})); then
        need_root_for "installing ${missing[*]}" "apt-get install ${missing[*]}"
        say "installing the build tools: ${missing[*]}"
        apt-get install -y --no-install-recommends "${missing[@]}" >>"$LOG" 2>&1 \
            || die "could not install ${missing[*]} with apt-get (see $LOG)."
    fi
}

# (grep reads all of apt-cache's output: with grep -q, apt-cache could die of SIGPIPE and
# pipefail would turn a found record into a failure.)
has_source_record() {
    apt-cache showsrc python3.13 2>/dev/null | grep '^Package: python3.13$' >/dev/null
}

# The version of python3.13's source package apt knows of (empty if none).
source_version() {
    { apt-cache showsrc python3.13 2>/dev/null || true; } \
        | awk '/^Version:/ && v == "" {v = $2} END {print v}'
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
    step "finding the python3.13 source package"
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
    # shellcheck source=/dev/null  # /etc/os-release: the system's, read for its PRETTY_NAME
    die "could not get python3.13's source package from Debian (tried suites: $SUITES; this" \
        "system is $(. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME"), which has no" \
        "python3.13 of its own). Check that the Debian mirror is reachable, or set FT_SUITES" \
        "to a suite that has it."
}

# The downloaded upstream tarball in $WORK/src, or nothing (also when $WORK/src is missing).
find_orig() {
    [[ -d "$WORK/src" ]] || return 0
    find "$WORK/src" -maxdepth 1 -name 'python3.13_*.orig.tar.*' ! -name '*.asc' 2>/dev/null \
        | head -n 1
}

# The source, as far as it got in an earlier run: TREE (unpacked) or ORIG (downloaded).
locate_source() {
    step "looking for an unpacked source tree in $WORK"
    if [[ -s "$WORK/.tree" && -x "$(cat "$WORK/.tree")/configure" ]]; then
        TREE="$(cat "$WORK/.tree")"
        say "source already unpacked: $TREE"
        return 0
    fi
    step "looking for a downloaded source package in $WORK/src"
    ORIG="$(find_orig)"
    if [[ -n "$ORIG" ]]; then
        say "source package already downloaded: $(basename "$ORIG")"
    else
        say "no source package downloaded yet"
    fi
}

# FT_DRY_RUN: what a real run would do from here; reads apt's cache, changes nothing.
dry_run_report() {
    if [[ -n "$TREE" ]]; then
        say "dry run: would configure, make and install $TREE"
    elif [[ -n "$ORIG" ]]; then
        say "dry run: would unpack $(basename "$ORIG"), then configure, make and install it"
    else
        step "finding the python3.13 source package (dry run: apt's cache only)"
        if has_source_record; then
            say "dry run: apt has python3.13 $(source_version) source; would download it" \
                "with apt-get source --download-only into $WORK/src"
        else
            say "dry run: apt has no python3.13 source; would add a deb-src entry for" \
                "suite(s) '$SUITES' ($SRC_LIST), apt-get update, and download it into $WORK/src"
        fi
    fi
    say "dry run (FT_DRY_RUN=$DRY_RUN): stopping before any apt change, download or build"
}

# apt-get source checks the files against the signed Sources index.
download_source() {
    find_source_package
    step "downloading the python3.13 source package"
    say "apt-get source --download-only python3.13 (version $(source_version))"
    mkdir -p "$WORK/src"
    (cd "$WORK/src" && apt-get source --download-only python3.13) >>"$LOG" 2>&1 \
        || die "apt-get source python3.13 failed: is the Debian mirror reachable? (see $LOG)"
    ORIG="$(find_orig)"
    [[ -n "$ORIG" ]] || die "the downloaded source package has no upstream tarball (in $WORK/src)."
}

unpack_source() {
    step "unpacking $ORIG"
    rm -rf "$WORK"/Python-3.13*
    tar -xf "$ORIG" -C "$WORK"
    TREE="$(find "$WORK" -maxdepth 1 -type d -name 'Python-3.13*' | head -n 1)"
    [[ -n "$TREE" && -x "$TREE/configure" ]] || die "unexpected layout in $ORIG: no Python-3.13*/"
    echo "$TREE" >"$WORK/.tree"
}

# zlib is the only library module the servers need (WORK's crc32); the rest is built in.
install_build_deps() {
    step "installing build dependencies"
    if dpkg -s zlib1g-dev >/dev/null 2>&1; then
        return 0
    fi
    need_root_for "installing zlib1g-dev" "apt-get install zlib1g-dev"
    say "installing zlib1g-dev"
    apt-get install -y --no-install-recommends zlib1g-dev >>"$LOG" 2>&1 \
        || die "could not install zlib1g-dev with apt-get (see $LOG)."
}

build() {
    step "configure"
    cd "$TREE"
    say "configure --disable-gil --prefix=$PREFIX (log: $LOG)"
    # shellcheck disable=SC2086  # FT_CONFIGURE_EXTRA is a list of options
    ./configure --disable-gil --prefix="$PREFIX" --without-ensurepip \
        ${FT_CONFIGURE_EXTRA:-} >>"$LOG" 2>&1
    step "make -j$JOBS (the long step: minutes)"
    make -j"$JOBS" >>"$LOG" 2>&1
    step "make altinstall"
    make altinstall >>"$LOG" 2>&1
}

verify() {
    step "verifying $BIN"
    [[ -x "$BIN" ]] || die "the build finished but $BIN is missing (see $LOG)."
    local gil
    gil="$(timeout 20 "$BIN" -c "$PROBE" 2>&1)" \
        || die "$BIN does not run or lacks zlib: $gil (see $LOG)"
    [[ "$gil" == "False" ]] || die "$BIN reports sys._is_gil_enabled() = $gil, expected False."
}

# Fresh clone: none of $WORK, $WORK/src, the log exists yet; every later step may rely on them.
prepare_work() {
    step "preparing the build folder $WORK"
    mkdir -p "$WORK/src"
    if ! dry_run; then
        : >"$LOG"
        LOG_READY=1
    fi
}

main() {
    STEP="checking for an existing build in $PREFIX"
    if already_built; then
        say "already built: $BIN ($("$BIN" -VV | head -n 1)), GIL disabled"
        return 0
    fi
    prepare_work
    check_tools
    locate_source
    if dry_run; then
        dry_run_report
        return 0
    fi
    if [[ -z "$TREE" ]]; then
        [[ -n "$ORIG" ]] || download_source
        unpack_source
    fi
    install_build_deps
    build
    verify
    if [[ -z "${FT_KEEP_BUILD:-}" ]]; then
        step "removing the build tree (keeping the downloaded source in $WORK/src)"
        cd "$WORK" # build() left us in $TREE: do not stay in a deleted folder
        rm -rf "$TREE" "$WORK/.tree"
    fi
    say "done in $((SECONDS - START)) s: $BIN ($("$BIN" -VV | head -n 1)), GIL disabled"
}

main "$@"
