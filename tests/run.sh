#!/usr/bin/env bash
# run.sh — runs the whole suite after `make tests`, `make SAN=1 tests` and
# `make fuzz` (the Makefile's `test` target does all four):
#   1. every tests/test_* program, release build;
#   2. the same programs built with ASan+UBSan;
#      then the server's Node.js tests (OpenAI SDK, load) on the release build,
#      the dashboard in headless chromium (tests/web),
#      the JSON-schema outputs checked with ajv (tests/grammar),
#      and the agents notebook (the README's main job) end to end;
#   3. each fuzz target for FUZZ_SECONDS (default 60 in all) under ASan+UBSan;
#   4. a compile-only check of the CUDA sources when nvcc is installed;
#   5. the format check.
# Each program prints "ok   name" / "FAIL name" lines; this script counts
# them and ends with "N passed, N failed".
set -u
cd "$(dirname "$0")/.."

passed=0
failed=0
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

# record NAME STATUS: counts one result.
record() {
    if [ "$2" = ok ]; then passed=$((passed + 1)); echo "ok   $1"; else
        failed=$((failed + 1)); echo "FAIL $1"; fi
}

# run_program LABEL BINARY: runs a test program and counts its result lines;
# a crash or a non-zero exit without a FAIL line counts as one failure.
run_program() {
    local label=$1 bin=$2 out rc p f
    out=$("$bin" 2>&1)
    rc=$?
    printf '%s\n' "$out" | sed -e "s/^ok   /ok   $label /" -e "s/^FAIL /FAIL $label /"
    p=$(printf '%s\n' "$out" | grep -c '^ok ')
    f=$(printf '%s\n' "$out" | grep -c '^FAIL ')
    passed=$((passed + p))
    failed=$((failed + f))
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        record "$label $(basename "$bin") (exit status $rc)" fail
    fi
}

for build in release asan; do
    for bin in build/$build/tests/test_*; do
        [ -x "$bin" ] || continue
        run_program "[$build]" "$bin"
    done
done

# The server through the official OpenAI SDK and under load: Node.js, with
# the SDK pinned in tests/server/package-lock.json (npm ci installs it).
if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
    mkdir -p build
    if (cd tests/server && npm ci --no-audit --no-fund >../../build/npm-ci.log 2>&1); then
        for t in tests/server/*.test.mjs; do run_program "[server]" "$t"; done
    else
        tail -n 20 build/npm-ci.log
        record "[server] npm ci in tests/server (see build/npm-ci.log)" fail
    fi
else
    record "[server] node and npm missing (tools/deps.sh installs them)" fail
fi

# The dashboard in a browser: playwright-core (pinned in
# tests/web/package-lock.json; it downloads no browser) driving Debian's
# chromium against a real hearth serve; screenshots go to build/web-test/.
if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
    mkdir -p build
    if ! command -v "${CHROMIUM:-chromium}" >/dev/null 2>&1; then
        record "[web] chromium missing (tools/deps.sh installs it)" fail
    elif (cd tests/web && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund \
        >../../build/npm-ci-web.log 2>&1); then
        export CHROMIUM="$(command -v "${CHROMIUM:-chromium}")"
        for t in tests/web/*.test.mjs; do run_program "[web]" "$t"; done
    else
        tail -n 20 build/npm-ci-web.log
        record "[web] npm ci in tests/web (see build/npm-ci-web.log)" fail
    fi
fi

# Constrained output (hearth run --json-schema) checked by an independent
# validator: ajv, pinned in tests/grammar/package-lock.json.
if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
    mkdir -p build
    if (cd tests/grammar && npm ci --no-audit --no-fund >../../build/npm-ci-grammar.log 2>&1); then
        for t in tests/grammar/*.test.mjs; do run_program "[grammar]" "$t"; done
    else
        tail -n 20 build/npm-ci-grammar.log
        record "[grammar] npm ci in tests/grammar (see build/npm-ci-grammar.log)" fail
    fi
else
    record "[grammar] node and npm missing (tools/deps.sh installs them)" fail
fi

# The README's main job: the twelve agents of examples/notebook on one model,
# news through to a fresh digest (the store and inboxes it writes are ignored).
nb_log=build/notebook.log
mkdir -p build
if PORT=$((20000 + $$ % 20000)) timeout 300 examples/notebook/run.sh >"$nb_log" 2>&1 &&
    sed -n '/^== the digest/,$p' "$nb_log" | grep -q ' succeeded '; then
    record "[notebook] examples/notebook/run.sh: news reached a new digest" ok
else
    tail -n 20 "$nb_log"
    record "[notebook] examples/notebook/run.sh (see $nb_log)" fail
fi

# Fuzzing: seeds from fuzz/corpus/<target> plus the shared models.
fuzz_total=${FUZZ_SECONDS:-60}
targets=(build/fuzz/fuzz_*)
if [ -x "${targets[0]}" ]; then
    per=$((fuzz_total / ${#targets[@]}))
    [ "$per" -ge 5 ] || per=5
    for bin in "${targets[@]}"; do
        name=$(basename "$bin")
        corpus=build/fuzz-corpus/$name
        mkdir -p "$corpus"
        seeds=fuzz/corpus/${name#fuzz_}
        [ -d "$seeds" ] && cp -f "$seeds"/* "$corpus"/ 2>/dev/null
        log=build/fuzz-corpus/$name.log
        if "$bin" -max_total_time="$per" -max_len=4096 -timeout=10 -rss_limit_mb=4096 \
            -print_final_stats=1 "$corpus" >"$log" 2>&1; then
            runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$')
            record "[fuzz] $name: ${runs:-?} inputs in ${per}s, no finding" ok
        else
            tail -n 40 "$log"
            record "[fuzz] $name: finding (see $log)" fail
        fi
    done
else
    record "[fuzz] targets not built (make fuzz)" fail
fi

# The CUDA backend compiles wherever nvcc is installed (no GPU needed: the
# kernels run in test_cuda, on a machine with one, built with make CUDA=1).
nvcc_bin=${NVCC:-$(command -v nvcc || echo "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc")}
if [ -x "$nvcc_bin" ]; then
    if make -s cuda-check NVCC="$nvcc_bin" >build/cuda-check.log 2>&1; then
        record "[cuda] CUDA sources compile (make cuda-check)" ok
    else
        tail -n 20 build/cuda-check.log
        record "[cuda] make cuda-check (see build/cuda-check.log)" fail
    fi
else
    echo "skip [cuda] nvcc not found: the CUDA sources were not compiled"
fi

# Formatting of every tracked C source.
if command -v clang-format >/dev/null 2>&1; then
    if make -s format-check >build/format.log 2>&1; then
        record "[format] clang-format check" ok
    else
        head -n 20 build/format.log
        record "[format] clang-format check (make format fixes it)" fail
    fi
else
    record "[format] clang-format missing" fail
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
