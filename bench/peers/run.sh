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
# iceoryx2 keeps a machine-wide management object in /dev/shm and node and service records in
# /tmp/iceoryx2 after its last node is gone: remove those this run created (another iceoryx2
# user's stay).
before_shm=$(ls -d /dev/shm/iox2_* 2>/dev/null || true)
had_tmp=$([ -e /tmp/iceoryx2 ] && echo 1 || true)
status=0
target/release/shmchan-peers "$@" || status=$?
for f in /dev/shm/iox2_*; do
    [ -e "$f" ] || continue
    grep -qxF "$f" <<<"$before_shm" || rm -f "$f"
done
[ -n "$had_tmp" ] || rm -rf /tmp/iceoryx2
exit $status
