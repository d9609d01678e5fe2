import DequeModule
import Foundation
import Histogram
import TickwireCore

// Shared by the ring and router suites: threads, clocks, percentiles, and the lock-guarded deque baseline.

/// A thread a suite starts and joins.
final class BenchThread: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)
    init(_ body: @escaping @Sendable () -> Void) {
        let thread = Thread { [done] in body(); done.signal() }
        thread.stackSize = 1 << 22
        thread.start()
    }
    func join() { done.wait() }
}

/// A result a worker thread hands back to the suite.
final class BenchBox<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: T
    init(_ value: T) { self.value = value }
    func set(_ v: T) { lock.lock(); value = v; lock.unlock() }
    var get: T { lock.lock(); defer { lock.unlock() }; return value }
}

/// CLOCK_MONOTONIC in nanoseconds.
@inline(__always) func benchNow() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Int64(ts.tv_sec) &* 1_000_000_000 &+ Int64(ts.tv_nsec)
}

/// Spins until `deadline` (monotonic ns): pacing for latency runs without sleeping.
@inline(__always) func spinUntil(_ deadline: Int64) { while benchNow() < deadline {} }

/// The best and median of `runs` measurements of a rate (higher is better).
func bestAndMedian(_ runs: Int, _ measure: () throws -> Double) rethrows -> (best: Double, median: Double) {
    var xs: [Double] = []
    for _ in 0..<max(1, runs) { xs.append(try measure()) }
    xs.sort()
    return (xs.last!, xs[xs.count / 2])
}

func rateReport(_ r: (best: Double, median: Double)) -> [String: Any] {
    ["best_per_s": r.best.rounded(), "median_per_s": r.median.rounded()]
}

func ratio(_ a: Double, _ b: Double) -> Double { b > 0 ? (a / b * 100).rounded() / 100 : 0 }

/// Latency percentiles in nanoseconds.
struct LatencyRecorder {
    var histogram = Histogram<UInt64>(highestTrackableValue: 60_000_000_000, numberOfSignificantValueDigits: .three)
    mutating func record(_ nanos: Int64) { histogram.record(UInt64(max(0, nanos))) }
    var report: [String: Any] {
        ["samples": histogram.totalCount,
         "p50_ns": histogram.valueAtPercentile(50), "p99_ns": histogram.valueAtPercentile(99),
         "p99_9_ns": histogram.valueAtPercentile(99.9), "max_ns": histogram.max,
         "mean_ns": histogram.mean.rounded()]
    }
    var p99: UInt64 { histogram.valueAtPercentile(99) }
}

/// The baseline the ring is measured against: a bounded queue of events in a `Deque` guarded by a plain lock
/// (NSLock, a pthread mutex, not the priority-inheritance `Synchronization.Mutex`), with a condition variable
/// for the parked variant.
final class LockedDequeQueue: @unchecked Sendable {
    private let lock = NSCondition()
    private var queue = Deque<Event>()
    private var closed = false
    private var sleepers = 0
    let capacity: Int

    init(capacity: Int) {
        self.capacity = capacity
        queue.reserveCapacity(capacity)
    }

    /// Appends all of `events` (waiting, spinning, while the queue is full).
    func push(_ events: UnsafeBufferPointer<Event>) {
        var i = 0
        while i < events.count {
            lock.lock()
            let room = min(capacity - queue.count, events.count - i)
            if room > 0 { queue.append(contentsOf: events[i..<(i + room)]); i += room }
            if sleepers > 0 { lock.broadcast() }
            lock.unlock()
            if room == 0 { sched_yield() }
        }
    }

    func push(_ event: Event) {
        while true {
            lock.lock()
            if queue.count < capacity {
                queue.append(event)
                if sleepers > 0 { lock.signal() }
                lock.unlock()
                return
            }
            lock.unlock()
            sched_yield()
        }
    }

    func close() { lock.lock(); closed = true; lock.broadcast(); lock.unlock() }

    /// Moves up to `buffer.count` events into `buffer` (processed by the caller outside the lock); `park`
    /// sleeps on the condition variable when empty, else returns 0 at once. Returns -1 when closed and empty.
    func pop(into buffer: UnsafeMutableBufferPointer<Event>, park: Bool) -> Int {
        while true {
            lock.lock()
            if !queue.isEmpty {
                var n = 0
                while n < buffer.count, let e = queue.popFirst() { buffer[n] = e; n += 1 }
                lock.unlock()
                return n
            }
            if closed { lock.unlock(); return -1 }
            if park {
                sleepers += 1
                lock.wait()
                sleepers -= 1
                lock.unlock()
            } else {
                lock.unlock()
                return 0
            }
        }
    }
}

/// A QUOTE whose payload carries `n`.
@inline(__always) func benchEvent(_ subject: SubjectID, _ n: Int64) -> Event {
    Event(subjectID: subject, kind: .quote, eventTime: Nanos(n), knownTime: Nanos(n), a: n, b: n, c: n, d: n)
}
