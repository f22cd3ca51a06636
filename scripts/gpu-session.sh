#!/usr/bin/env bash
# The device tool's command for issue 18: runs scripts/gpu-bench.sh into a scratch folder and hands
# its results back as one archive, because the tool returns at most 8 files from $OUT (the bench
# writes ~60) and returns nothing of a command it kills at its limit but what is already in $OUT.
# So the archive is refreshed every 20 s while the bench runs ($OUT/partial.tgz), and written once
# more when it ends ($OUT/results.tgz, the partial one then removed).
#
# Usage (device tool): run(command="OUT=$OUT bash scripts/gpu-session.sh", carry=["target/gpu"])
#        (CPU check:    OUT=/tmp/s bash scripts/gpu-session.sh --cpu-dry-run; its arguments go to the bench)
# Env: LIMIT (seconds before the bench is stopped, default 490), EVERY (seconds between partial
# archives, default 20), BENCH (the script to run, default scripts/gpu-bench.sh; tests swap it), and
# gpu-bench.sh's own (BUDGET).
set -uo pipefail
OUT="${OUT:?set OUT to the folder that comes back}"
LIMIT="${LIMIT:-490}"
EVERY="${EVERY:-20}"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH="${BENCH:-$REPO/scripts/gpu-bench.sh}"
RES="$(mktemp -d /tmp/gpu-results.XXXXXX)"
DONE="$RES.done"

pack() {   # pack NAME: the results so far as $OUT/NAME, never half-written under that name
  tar -C "$RES" -czf "$OUT/.packing.tgz" . 2>/dev/null
  # tar's 1 is "a file changed as it was read": a log still being written, which is expected here.
  (($? <= 1)) && mv -f "$OUT/.packing.tgz" "$OUT/$1"
}

# The bench runs in a session of its own: each of its steps runs under a `timeout` of its own,
# which makes it a process group of its own, out of reach of the outer timeout's kill; the session
# holds them all, so a bench stopped at LIMIT (or a session stopped by a signal) leaves nothing
# running on the card. In a script (no job control) a background child leads no process group,
# so `setsid` makes the new session in place and its pid is the session's id.
(
  OUT="$RES" setsid timeout -k 10 "$LIMIT" bash "$BENCH" "$@" >"$RES/bench.log" 2>&1 &
  bench=$!
  echo "$bench" >"$RES.sid"
  wait "$bench"
  rc=$?
  pkill -KILL -s "$bench" 2>/dev/null
  echo "$(basename "$BENCH") exit status: $rc" >>"$RES/bench.log"
  touch "$DONE"
) &
# An MPS control daemon the bench started and had no time to stop (it leaves its pipe folder in
# mps-pipe.txt until the daemon has quit; the daemon leaves the bench's session): stopped here, so
# no MPS server outlives the call.
stop_mps() {
  [[ -s "$RES/mps-pipe.txt" ]] || return 0
  local pipe control
  { read -r pipe; read -r control; } <"$RES/mps-pipe.txt"
  control=${control:-$(command -v nvidia-cuda-mps-control)}
  if [[ ! -x "$control" ]]; then
    echo "gpu-session.sh: the bench left an MPS daemon (pipe $pipe) and no control to quit it" >>"$RES/bench.log"
    return 0
  fi
  echo quit | CUDA_MPS_PIPE_DIRECTORY="$pipe" timeout 20 "$control"
  echo "gpu-session.sh: told the MPS daemon the bench left to quit (rc=$?)" >>"$RES/bench.log"
}
stop() {
  [[ -s "$RES.sid" ]] && pkill -KILL -s "$(cat "$RES.sid")" 2>/dev/null
  stop_mps
  rm -rf "$RES" "$RES.sid" "$DONE"
  exit 143
}
trap stop TERM INT
last=$SECONDS
while [[ ! -e "$DONE" ]]; do
  sleep 1
  if ((SECONDS - last >= EVERY)); then pack partial.tgz; last=$SECONDS; fi
done
stop_mps
pack results.tgz && rm -f "$OUT/partial.tgz"
cp "$RES/summary.txt" "$OUT/summary.txt" 2>/dev/null
cat "$RES/bench.log"
rm -rf "$RES" "$RES.sid" "$DONE"
