#!/usr/bin/env bash
# The test command: every test against real daemons, sockets and files, then the allocation gate (the per-event
# benchmarks' allocation counts against Benchmarks/Thresholds/, Tools/alloc_gate.sh), then the concurrency tests
# again under the thread sanitizer (in a scratch path of their own so the two builds do not overwrite each other).
#
# Each step runs under a watchdog: a step still running after its limit gets the thread stacks of the test
# process printed (gdb), then is killed, so a hang fails fast and says where it was.
#
# Inside a step, suites carry Swift Testing's `.timeLimit(.minutes(N))`: with swift-corelibs on Linux a test
# still blocked after N minutes is reported at once by name ("Time limit was exceeded"), although its thread
# cannot be stopped; the watchdog then ends the step. A test's clock runs from its start, also while it waits
# for one of the two threads of Swift's cooperative pool that tests blocked on daemons hold: on a loaded machine
# in-memory tests waited over two minutes that way, so no suite's limit is under five minutes.
set -uo pipefail
cd "$(dirname "$0")/.."

# Every process this step started (its descendants, found through their parents): the watchdog ends these and
# nothing else, so a run beside another checkout's tests never kills the other's.
descendants() {
    local c
    for c in $(pgrep -P "$1"); do
        echo "$c"
        descendants "$c"
    done
}

bounded() {
    local limit=$1; shift
    "$@" &
    local pid=$!
    (
        sleep "$limit"
        echo "test.sh: '$*' still running after ${limit} s; thread stacks of its test process follow" >&2
        procs=$(descendants "$pid")
        for p in $procs; do
            if tr '\0' ' ' < "/proc/$p/cmdline" 2>/dev/null | grep -q 'PackageTests.xctest'; then
                gdb -p "$p" -batch -ex 'thread apply all bt 40' >&2 2>&1 || true
            fi
        done
        kill -KILL $procs 2>/dev/null
        kill -KILL "$pid" 2>/dev/null
    ) &
    local watchdog=$!
    local rc=0
    wait "$pid" || rc=$?
    kill "$watchdog" 2>/dev/null
    wait "$watchdog" 2>/dev/null
    return "$rc"
}

bounded 2400 swift test || exit $?
bounded 1200 Tools/alloc_gate.sh || exit $?
bounded 1500 swift test --sanitize=thread --scratch-path .build-tsan --filter 'TickwireRingTests|TickwireRiskTests|TickwireJournalTests|TickwireNATSTests|HubTests|RelaySourceTests|PublishStageTests|TradeServiceTests|TradeFaultTests|TradeCheckpointTests|MonitorFeedTests|NATSLossTrackerTests|ImportStagerTests|ExportTests' || exit $?
