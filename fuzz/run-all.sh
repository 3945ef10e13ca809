#!/usr/bin/env bash
# Runs every fuzz target for N seconds each (default 10) and exits non-zero if any
# target crashes (a panic, a broken invariant, a leak or a timeout).
#
#   fuzz/run-all.sh [seconds]
#
# Environment:
#   FUZZ_TARGETS="a b"       run only these targets (default: all of `cargo fuzz list`)
#   FUZZ_SANITIZER=address   build with a sanitizer (default: none, all our code is safe Rust)
#
# Seeds are read from fuzz/corpus/<target>/ (versioned, never written); what the fuzzer
# learns goes to fuzz/corpus-work/<target>/ (ignored by git), so runs build on each other.
# A crash leaves its input in fuzz/artifacts/<target>/ and the log in fuzz/target/logs/.
set -uo pipefail

seconds="${1:-10}"
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -lt 1 ]; then
    echo "usage: $0 [seconds per target, default 10]" >&2
    exit 2
fi

cd "$(dirname "$0")" || exit 2
export RUSTC_BOOTSTRAP=1 # cargo-fuzz needs nightly flags; stable accepts them with this.
sanitizer="${FUZZ_SANITIZER:-none}"
flags=(--sanitizer "$sanitizer" --debug-assertions)

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz is missing: installing it" >&2
    cargo install cargo-fuzz --locked || exit 2
fi

targets="${FUZZ_TARGETS:-$(cargo fuzz list)}"
echo "building fuzz targets (sanitizer: $sanitizer)" >&2
cargo fuzz build "${flags[@]}" || exit 2

mkdir -p target/logs
failed=()
for target in $targets; do
    mkdir -p "corpus-work/$target" "corpus/$target"
    log="target/logs/$target.log"
    echo "== $target: ${seconds}s" >&2
    cargo fuzz run "${flags[@]}" "$target" "corpus-work/$target" "corpus/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 >"$log" 2>&1
    status=$?
    # libFuzzer's last status line: "#<runs> DONE cov: .. ft: .. corp: .. exec/s: .. rss: .."
    summary=$(grep -a -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1 | tr -s ' \t' ' ')
    if [ "$status" -ne 0 ]; then
        failed+=("$target")
        echo "!! $target FAILED (exit $status); log: fuzz/$log" >&2
        grep -a -E -A4 "panicked at|ERROR: libFuzzer|SUMMARY" "$log" | head -n 30 >&2
        grep -a -E -A2 "^Reproduce with" "$log" | grep -a "cargo fuzz" | head -n 1 >&2
    else
        echo "ok $target: $summary" >&2
    fi
done

if [ "${#failed[@]}" -ne 0 ]; then
    echo "fuzzing found crashes in: ${failed[*]}" >&2
    exit 1
fi
echo "fuzzing: no crash in $(echo "$targets" | wc -w) targets (${seconds}s each)" >&2
