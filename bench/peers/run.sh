#!/usr/bin/env bash
# Builds and runs the peers benchmark: shmchan against iceoryx2 and pipes, in one run.
#   bench/peers/run.sh            # full run (a few minutes on 2 cores)
#   bench/peers/run.sh --quick    # a shorter run
# Results: a table on stdout and bench/peers/target/peers.csv.
# iceoryx2 builds its POSIX layer with bindgen, which needs libclang (Debian: libclang-dev).
set -euo pipefail
cd "$(dirname "$0")"
if ! ls /usr/lib/llvm-*/lib/libclang.so >/dev/null 2>&1 && ! ldconfig -p | grep -q 'libclang\.so'; then
    echo "installing libclang-dev (bindgen, for iceoryx2)" >&2
    apt-get install -y -q libclang-dev >/dev/null
fi
cargo build --release -q
exec target/release/shmchan-peers "$@"
