#!/usr/bin/env bash
# A user's own training loops (examples/ddp_loop, ps_loop, pipeline_loop), built against
# the INSTALLED package as one CMake project (find_package(loom) + loom::loom) and run
# under the real launcher, `loom run --nproc 2`. Each 2-process run must end where one
# process training on the whole batch ends (parameters within 1e-5; a NaN fails), with
# identical replicas where there are replicas, and a falling loss.
#   usage: user_examples.sh BUILD_DIR        (ctest: user_examples)
set -euo pipefail
build=$1
src=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
server_pids=()
cleanup() {
  for pid in "${server_pids[@]}"; do kill "$pid" 2> /dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "user_examples: FAILED: $*" >&2; exit 1; }

# A job environment around `make test` must not make the reference runs distributed.
unset RANK WORLD_SIZE LOCAL_RANK LOCAL_WORLD_SIZE MASTER_ADDR MASTER_PORT LOOM_RESTART_COUNT \
  SLURM_PROCID SLURM_NTASKS SLURM_LOCALID SLURM_NTASKS_PER_NODE \
  OMPI_COMM_WORLD_RANK OMPI_COMM_WORLD_SIZE OMPI_COMM_WORLD_LOCAL_RANK
export OPENBLAS_NUM_THREADS=1  # two workers share this machine's cores

# Install, then build the three examples in one project (configured once).
cmake --install "$build" --prefix "$work/prefix" > "$work/install.log"
loom=$work/prefix/bin/loom
test -x "$loom"
launcher=()
command -v ccache > /dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
start=$SECONDS
cmake -S "$src/examples" -B "$work/build" -G Ninja -DCMAKE_PREFIX_PATH="$work/prefix" \
  -DCMAKE_BUILD_TYPE=Release "${launcher[@]}" > "$work/configure.log" || { cat "$work/configure.log"; exit 1; }
cmake --build "$work/build" -j 2 > "$work/build.log" || { cat "$work/build.log"; exit 1; }
echo "built ddp_loop, ps_loop, pipeline_loop against the installed package in $((SECONDS - start)) s"
ex=$work/build
out=$work/out
mkdir "$out"

# Runs a command with a time limit, its output shown and kept in LOG.
run_logged() {
  local log=$1
  shift
  echo "\$ ${*#"$work/"}"
  timeout 300 "$@" > "$log" 2>&1 && rc=0 || rc=$?
  cat "$log"
  [ "$rc" = 0 ] || fail "exit code $rc: $*"
}
# The loss printed for the last epoch is below the first epoch's ("[0]: epoch E loss L").
loss_went_down() {
  awk '/epoch [0-9]+ loss/ { l = $NF; if (n++ == 0) first = l; last = l }
       END { if (n < 2 || !(last < first)) { print "loss did not go down: " first " -> " last; exit 1 } }' "$1" \
    || fail "$2"
}
# A port nobody listens on, for a job whose servers must know it in advance.
free_port() {
  local p
  for _ in $(seq 100); do
    p=$((20000 + RANDOM % 40000))
    (exec 3<> "/dev/tcp/127.0.0.1/$p") 2> /dev/null || { echo "$p"; return; }
  done
  fail "no free port found"
}

echo "== ddp_loop: DistributedDataParallel, a two-input module, shares 3/4 and 1/4"
t=$SECONDS
run_logged "$out/ddp1.log" "$ex/ddp_loop" "$out/ddp_single"
run_logged "$out/ddp2.log" "$loom" run --nproc 2 -- "$ex/ddp_loop" "$out/ddp_rank"
loss_went_down "$out/ddp2.log" "ddp_loop: loss"
"$ex/ddp_loop" --compare "$out/ddp_rank0.pt" "$out/ddp_rank1.pt" 0 || fail "ddp_loop: the replicas differ"
"$ex/ddp_loop" --compare "$out/ddp_single0.pt" "$out/ddp_rank0.pt" || fail "ddp_loop: 2 processes != 1 process"
echo "ddp_loop OK ($((SECONDS - t)) s)"

echo "== ps_loop: 2 workers through ps::Worker, 2 'loom ps-server' processes (sync)"
t=$SECONDS
run_logged "$out/ps1.log" "$ex/ps_loop" 0 "$out/ps_single"
port=$(free_port)
for i in 0 1; do
  timeout 300 "$loom" ps-server --index "$i" --workers 2 --servers 2 --master-port "$port" \
    --lr 0.05 --momentum 0.9 --timeout 60 > "$out/server$i.log" 2>&1 &
  server_pids+=($!)
done
run_logged "$out/ps2.log" "$loom" run --nproc 2 --master-port "$port" -- "$ex/ps_loop" 2 "$out/ps_rank"
for i in 0 1; do
  wait "${server_pids[$i]}" && rc=0 || rc=$?
  cat "$out/server$i.log"
  [ "$rc" = 0 ] || fail "ps-server $i: exit code $rc"
  grep -q "parameter server $i: all workers done after" "$out/server$i.log" || fail "ps-server $i did not finish"
done
server_pids=()
loss_went_down "$out/ps2.log" "ps_loop: loss"
"$ex/ps_loop" --compare "$out/ps_rank0.pt" "$out/ps_rank1.pt" 0 || fail "ps_loop: the workers' parameters differ"
"$ex/ps_loop" --compare "$out/ps_single0.pt" "$out/ps_rank0.pt" || fail "ps_loop: 2 workers != 1 process"
echo "ps_loop OK ($((SECONDS - t)) s)"

echo "== pipeline_loop: a Sequential in 2 stages, 4 micro-batches, 1F1B"
t=$SECONDS
run_logged "$out/pipe1.log" "$ex/pipeline_loop" "$out/pipe_single"
run_logged "$out/pipe2.log" "$loom" run --nproc 2 -- "$ex/pipeline_loop" "$out/pipe"
loss_went_down "$out/pipe2.log" "pipeline_loop: loss"
"$ex/pipeline_loop" --compare "$out/pipe_single.pt" "$out/pipe.pt" || fail "pipeline_loop: 2 stages != 1 process"
echo "pipeline_loop OK ($((SECONDS - t)) s)"
echo "user examples OK"
