#!/bin/sh
# nvcc-unity.sh NVCC ARGS... : compiles every *.cu among ARGS as ONE translation unit
# (a generated file that #includes them), passing the other ARGS to NVCC. One host
# compile instead of one per op file cuts the library's build from ~70 s to ~10 s;
# the price is that file-local names must differ between the .cu files.
set -e
nvcc=$1
shift
unity=$(mktemp "${TMPDIR:-/tmp}/hybridchat-cuda-XXXXXX.cu")
trap 'rm -f "$unity"' EXIT
args=""
for a in "$@"; do
  case "$a" in
    *.cu) echo "#include \"$(cd "$(dirname "$a")" && pwd)/$(basename "$a")\"" >> "$unity" ;;
    *) args="$args '$(printf '%s' "$a" | sed "s/'/'\\\\''/g")'" ;;
  esac
done
eval "set -- $args"
"$nvcc" "$@" "$unity"
