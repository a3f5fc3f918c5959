#!/usr/bin/env bash
# Install opencode (pinned) into .cache/opencode with npm, once; print the binary's path.
#
# Idempotent: when the binary is already there and reports the pinned version, nothing is
# downloaded. On linux-x64 the lean platform package `opencode-linux-x64` (one binary, no
# install script) is used, with its `-baseline` variant on CPUs without AVX2; elsewhere the
# `opencode-ai` shim package, whose postinstall links the right platform binary.
#
# Environment: OPENCODE_VERSION (default 1.18.33), OPENCODE_PREFIX (default <repo>/.cache/opencode),
# OPENCODE_NPM_PACKAGE=opencode-ai to force the shim package on linux-x64 too.
set -euo pipefail

VERSION="${OPENCODE_VERSION:-1.18.33}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PREFIX="${OPENCODE_PREFIX:-$ROOT/.cache/opencode}"

os="$(uname -s)"
arch="$(uname -m)"
if [[ "$os" == "Linux" && "$arch" == "x86_64" && "${OPENCODE_NPM_PACKAGE:-}" != "opencode-ai" ]]; then
    package="opencode-linux-x64"
    if ! grep -qw avx2 /proc/cpuinfo 2>/dev/null; then
        package="opencode-linux-x64-baseline"
    fi
    binary="$PREFIX/node_modules/$package/bin/opencode"
else
    package="opencode-ai"  # its postinstall links the platform binary as bin/opencode.exe
fi

resolve_binary() {
    if [[ "$package" == "opencode-ai" ]]; then
        binary="$PREFIX/node_modules/opencode-ai/bin/opencode.exe"
        [[ -x "$binary" ]] || binary="$PREFIX/node_modules/opencode-ai/bin/opencode"
    fi
}

installed_version() {
    [[ -x "$binary" ]] || return 1
    "$binary" --version 2>/dev/null | tail -n 1 | tr -d '[:space:]'
}

resolve_binary
if [[ "$(installed_version || true)" == "$VERSION" ]]; then
    echo "$binary"
    exit 0
fi

if ! command -v npm >/dev/null 2>&1; then
    echo "install_opencode: npm is not installed" >&2
    exit 2
fi

mkdir -p "$PREFIX"
if command -v flock >/dev/null 2>&1; then  # one npm install at a time per prefix
    exec 9>"$PREFIX/.install.lock"
    flock 9
    resolve_binary
    if [[ "$(installed_version || true)" == "$VERSION" ]]; then
        echo "$binary"
        exit 0
    fi
fi
[[ -f "$PREFIX/package.json" ]] || echo '{"name":"opencode-cache","private":true}' >"$PREFIX/package.json"
echo "install_opencode: installing $package@$VERSION into $PREFIX" >&2
npm install --prefix "$PREFIX" --no-audit --no-fund --save-exact --loglevel=error \
    "$package@$VERSION" >&2

resolve_binary
got="$(installed_version || true)"
if [[ "$got" != "$VERSION" ]]; then
    echo "install_opencode: expected opencode $VERSION at $binary, got '${got:-nothing}'" >&2
    exit 1
fi
echo "$binary"
