#!/bin/sh
# The one command: builds a Release tree (no sanitizers) and runs every benchmark section.
#   test/bench/run.sh [--quick] [run.py options...]      (run.py --help lists them)
# BENCH_BUILD sets the build directory (default /tmp/relay-bench-build).
set -e
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${BENCH_BUILD:-/tmp/relay-bench-build}
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DRELAY_SANITIZE=OFF -DRELAY_FUZZ=OFF \
    >"$build.cmake.log" 2>&1 || { cat "$build.cmake.log"; exit 1; }
# the relay may not build while it is being worked on: the harness still runs without it
cmake --build "$build" -j"$(nproc)" --target loadgen fakebroker delayproxy
cmake --build "$build" -j"$(nproc)" --target mqtt-relay >"$build.relay.log" 2>&1 ||
    echo "run.sh: mqtt-relay did not build (see $build.relay.log): relay figures will be missing" >&2
exec /usr/bin/python3 "$here/run.py" --build "$build" "$@"
