#!/bin/sh
# Run the compiled core's lockstep tests under AddressSanitizer and UBSan: tools/fuzz.sh
# [EXAMPLES [TEST_FILE...]] builds kmem._core with -fsanitize=address,undefined into build/asan
# (beside a copy of src/kmem) and runs every lockstep and differential test there (or those of
# the files named: a quicker check of one change), hypothesis making EXAMPLES random programs
# per test (default 200; make test runs a bounded 20, make fuzz 2000).
# The trace parser's fuzz tests (tests/test_parse_fuzz.py: mutated fixture lines, the compiled
# inline loop of csrc/parse.c against the pure one) print how many lines they tried.
#
# Why hypothesis and not atheris: atheris needs libFuzzer's coverage callbacks, which gcc's
# ASan runtime shadows (its coverage is then lost, for Python and C alike); hypothesis needs no
# coverage to build long, structured programs of valid and invalid calls, and each program
# runs on both cores with every result and buffer byte compared.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-$here/.venv/bin/python}
examples=${1:-200}
[ $# -gt 0 ] && shift
[ $# -gt 0 ] || set -- tests
out=$here/build/asan
rm -rf "$out" "$here/build/asan-tmp"
mkdir -p "$out"
cp -r "$here/src/kmem" "$out/kmem"
rm -f "$out"/kmem/*.so
(cd "$here" && KMEM_SANITIZE=1 "$python" setup.py -q build_ext --build-lib "$out" \
    --build-temp "$here/build/asan-tmp" >/dev/null 2>&1)
asan=$(gcc -print-file-name=libasan.so)
ubsan=$(gcc -print-file-name=libubsan.so)
# CPython frees little at exit, so leak checking at exit would report the interpreter's own
# blocks; the tests instead check that the core's objects are freed (test_core_lockstep).
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
export PYTHONMALLOC=malloc KMEM_FUZZ_EXAMPLES=$examples KMEM_EXPECT_SANITIZED=1
cd "$here"
LD_PRELOAD="$asan:$ubsan" PYTHONPATH="$out:$here/tests" "$python" -m pytest -q -p no:cacheprovider \
    -m fuzz "$@"
