#!/usr/bin/env bash
# Regenerates the `shmchan inspect` transcripts in docs/operations.md from a real run, so the
# documentation shows what the command prints today. Each transcript is the fenced block that
# follows a `<!-- transcript: NAME -->` line; this script replaces that block's contents.
#
#   scripts/doc_transcripts.sh           # rewrite docs/operations.md
#   scripts/doc_transcripts.sh --check   # exit 1 if the format of a transcript changed
#
# --check compares the transcripts with pids, ids, keys, owners and dates blanked out, so a
# change in what the command prints (a new line, another layout) is caught, not a new pid.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

check=false
[ "${1:-}" = "--check" ] && check=true
doc=${DOC:-docs/operations.md}

cargo build -q -p shmchan-cli
cargo build -q --example inspect_demo
shmchan=target/debug/shmchan

# The demo holds its segments until its standard input closes: feed it from a FIFO that this
# script keeps open, and close it (file descriptor 3) to let the demo clean up and exit.
work=$(mktemp -d)
trap 'exec 3>&- 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
mkfifo "$work/in"
target/debug/examples/inspect_demo <"$work/in" >"$work/out" &
demo=$!
exec 3>"$work/in"
for _ in $(seq 100); do
    [ "$(wc -l <"$work/out")" -ge 2 ] && break
    kill -0 "$demo" 2>/dev/null || { echo "inspect_demo failed" >&2; exit 1; }
    sleep 0.1
done
value=$(awk '$1 == "value" { print $2 }' "$work/out")
channel=$(awk '$1 == "channel" { print $2 }' "$work/out")
"$shmchan" inspect "$value" >"$work/inspect-value"
"$shmchan" inspect "$channel" >"$work/inspect-channel"
exec 3>&-
wait "$demo"

python3 - "$doc" "$work" "$check" <<'PY'
import pathlib, re, sys

doc, work, check = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3] == "true"
text = doc.read_text()
pattern = re.compile(r"(<!-- transcript: ([a-z-]+) -->\n```\n)(.*?)(```\n)", re.S)

def blank(s):
    # What differs between two runs of the same build: ids, keys, pids, owners, dates.
    s = re.sub(r"segment \d+", "segment ID", s)
    s = re.sub(r"0x[0-9a-f]{8}", "0xKEY", s)
    s = re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ", "DATE", s)
    s = re.sub(r"\bowner \S+,", "owner USER,", s)
    return re.sub(r"\bpid \d+", "pid PID", s)

found, stale = set(), []
def replace(m):
    name = m.group(2)
    found.add(name)
    new = (work / name).read_text()
    if blank(new) != blank(m.group(3)):
        stale.append(name)
    return m.group(1) + new + m.group(4)

out = pattern.sub(replace, text)
missing = {"inspect-value", "inspect-channel"} - found
if missing:
    sys.exit(f"{doc}: no transcript marker for {', '.join(sorted(missing))}")
if check:
    if stale:
        sys.exit(f"{doc}: transcripts out of date: {', '.join(stale)}; run scripts/doc_transcripts.sh")
    print(f"{doc}: transcripts up to date")
else:
    doc.write_text(out)
    print(f"{doc}: transcripts regenerated" + (f" ({', '.join(stale)} changed)" if stale else ""))
PY
