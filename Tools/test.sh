#!/usr/bin/env bash
# The test command: every test against real daemons, sockets and files, then the concurrency tests again
# under the thread sanitizer (in a scratch path of their own so the two builds do not overwrite each other).
set -euo pipefail
cd "$(dirname "$0")/.."
swift test
swift test --sanitize=thread --scratch-path .build-tsan --filter 'TickwireRingTests|TickwireJournalTests'
