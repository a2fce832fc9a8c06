#!/usr/bin/env bash
# Differential test against mqtt-packet. usage: run.sh MQC_DIFF WORKDIR [diff.js options]
# Installs the pinned mqtt-packet (package-lock.json) into WORKDIR/npm with npm ci (offline
# from the npm cache first, then from the registry), then runs diff.js.
# Exit: 0 agree, 1 disagreement, 2 setup error, 77 node or npm missing (ctest: skipped).
set -euo pipefail
case ${BASH_SOURCE[0]} in */*) here=${BASH_SOURCE[0]%/*} ;; *) here=. ;; esac
here=$(cd "$here" && pwd)
[ $# -ge 2 ] || { echo "usage: $0 MQC_DIFF WORKDIR [options]" >&2; exit 2; }
exe=$1
work=$2
shift 2

if ! command -v node >/dev/null 2>&1; then
  echo "SKIP: node is not installed (apt-get install nodejs npm)"
  exit 77
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "SKIP: npm is not installed (apt-get install npm)"
  exit 77
fi

mkdir -p "$work"
work=$(cd "$work" && pwd)
case $exe in /*) ;; *) exe=$(pwd)/$exe ;; esac

npmdir=$work/npm
stamp=$npmdir/.installed-lock.json
mkdir -p "$npmdir"
if ! cmp -s "$here/package-lock.json" "$stamp" || [ ! -f "$npmdir/node_modules/mqtt-packet/package.json" ]; then
  cp "$here/package.json" "$here/package-lock.json" "$npmdir/"
  rm -f "$stamp"
  ( cd "$npmdir" &&
    { npm ci --offline --no-audit --no-fund --loglevel=error 2>/dev/null ||
      npm ci --no-audit --no-fund --loglevel=error; } ) || {
    echo "run.sh: npm ci failed: cannot install mqtt-packet (registry or cache needed)" >&2
    exit 2
  }
  cp "$here/package-lock.json" "$stamp"
fi

MQC_DIFF_NODE_MODULES=$npmdir/node_modules exec node "$here/diff.js" --mqc-diff "$exe" --work "$work/run" "$@"
