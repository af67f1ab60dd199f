#!/usr/bin/env bash
# Builds the release binaries (both: `cargo build --release --bins`) and assembles target/cf/, the folder `cf push` uploads:
#
#   scripts/package-for-cf.sh
#   cf push -f target/cf/manifest.yml --vars-file vars.yml
#
# Cloud Foundry's cflinuxfs4 stack is Ubuntu 22.04 on x86-64 with glibc 2.35, so the
# binaries must be built for x86_64-unknown-linux-gnu against glibc 2.35 or older: run this
# on such a Linux machine (or in a container of one); the script checks both.
set -euo pipefail
cd "$(dirname "$0")/.."

readonly TARGET=x86_64-unknown-linux-gnu
readonly STACK_GLIBC=2.35
readonly OUT=target/cf

host=$(rustc -vV | sed -n 's/^host: //p')
if [ "$host" != "$TARGET" ]; then
    echo "error: this machine builds for $host; Cloud Foundry needs $TARGET binaries." >&2
    echo "       Run this script on Linux x86-64, e.g. in a container of ubuntu:22.04." >&2
    exit 1
fi

cargo build --release --bins

rm -rf "$OUT"
mkdir -p "$OUT"
cp target/release/echo-broker target/release/echo-service "$OUT/"
cp manifest.yml catalog-cf.toml Procfile .cfignore "$OUT/"

# The highest glibc symbol version the binaries need must exist on the stack.
if command -v objdump >/dev/null; then
    for binary in echo-broker echo-service; do
        needed=$(objdump -T "$OUT/$binary" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' |
            sort -V | tail -1)
        if [ "$(printf '%s\n%s\n' "$needed" "$STACK_GLIBC" | sort -V | tail -1)" != "$STACK_GLIBC" ]; then
            echo "error: $binary needs glibc $needed; cflinuxfs4 has $STACK_GLIBC." >&2
            echo "       Build on Ubuntu 22.04 (or older) instead." >&2
            exit 1
        fi
        echo "$binary: needs glibc $needed (cflinuxfs4 has $STACK_GLIBC)"
    done
else
    echo "warning: objdump not found; glibc compatibility with cflinuxfs4 not checked" >&2
fi

ls -lA "$OUT"
echo
echo "Ready. Push both apps with:"
echo "  cf push -f $OUT/manifest.yml --vars-file vars.yml"
