import CTickwireSys
import DequeModule
import Foundation
import Histogram
import Synchronization
import TickwireCore

// Shared by the ring and router suites: threads, clocks, percentiles, and the lock-guarded deque baseline.

/// A thread a suite starts and joins.
final class BenchThread: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)
    /// - Parameter cpu: pins the thread to this CPU first (nil: the scheduler places it).
    init(cpu: Int? = nil, _ body: @escaping @Sendable () -> Void) {
        let thread = Thread { [done] in
            if let cpu { _ = tw_pin_thread(Int32(cpu)) }
            body()
            done.signal()
        }
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
    func update(_ body: (inout T) -> Void) { lock.lock(); body(&value); lock.unlock() }
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

/// Runs each measure once per round, in turn, for `runs` rounds: on a shared VM whose speed drifts with the
/// host, A and B then see the same conditions, and the per-round ratio A/B is what the report should quote.
/// - Returns: per measure, (best, median) of its rates, and its rates in round order.
func interleaved(_ runs: Int, _ measures: [() -> Double]) -> [(best: Double, median: Double, rounds: [Double])] {
    var xs = Array(repeating: [Double](), count: measures.count)
    for _ in 0..<max(1, runs) { for (i, m) in measures.enumerated() { xs[i].append(m()) } }
    return xs.map { rounds in
        let sorted = rounds.sorted()
        return (sorted.last!, sorted[sorted.count / 2], rounds)
    }
}

/// The median over rounds of a[i] / b[i] (two measures from `interleaved`).
func medianRatio(_ a: [Double], _ b: [Double]) -> Double {
    let r = zip(a, b).map { $1 > 0 ? $0 / $1 : 0 }.sorted()
    return r.isEmpty ? 0 : (r[r.count / 2] * 100).rounded() / 100
}

/// A rate's best and median over the rounds, per second.
struct Rate: Codable, Sendable {
    var bestPerS: Double
    var medianPerS: Double
    init(_ r: (best: Double, median: Double)) { bestPerS = r.best.rounded(); medianPerS = r.median.rounded() }
}


/// Latency percentiles of a histogram, in nanoseconds.
struct Latency: Codable, Sendable {
    var samples: UInt64
    var p50Ns: UInt64
    var p99Ns: UInt64
    var p99_9Ns: UInt64
    var maxNs: UInt64
    var meanNs: Double

    private enum CodingKeys: String, CodingKey {
        case samples, p50Ns = "p50_ns", p99Ns = "p99_ns", p99_9Ns = "p99_9_ns", maxNs = "max_ns", meanNs = "mean_ns"
    }

    init(_ h: Histogram<UInt64>) {
        samples = h.totalCount
        p50Ns = h.valueAtPercentile(50); p99Ns = h.valueAtPercentile(99); p99_9Ns = h.valueAtPercentile(99.9)
        maxNs = h.max; meanNs = h.mean.rounded()
    }
}

/// Percentiles in microseconds.
struct Micros: Codable, Sendable {
    var p50: Double, p99: Double, p99_9: Double?, max: Double?

    private enum CodingKeys: String, CodingKey { case p50, p99, p99_9 = "p99_9", max }

    init(_ h: Histogram<UInt64>, tail: Bool = true) {
        p50 = Double(h.valueAtPercentile(50)) / 1000; p99 = Double(h.valueAtPercentile(99)) / 1000
        p99_9 = tail ? Double(h.valueAtPercentile(99.9)) / 1000 : nil
        max = tail ? Double(h.max) / 1000 : nil
    }
}

func ratio(_ a: Double, _ b: Double) -> Double { b > 0 ? (a / b * 100).rounded() / 100 : 0 }

/// Latency percentiles in nanoseconds.
struct LatencyRecorder {
    var histogram = Histogram<UInt64>(highestTrackableValue: 60_000_000_000, numberOfSignificantValueDigits: .three)
    mutating func record(_ nanos: Int64) { histogram.record(UInt64(max(0, nanos))) }
    var report: Latency { Latency(histogram) }
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

/// Runs `body` with the calling thread pinned to `cpu`, then lets it run anywhere again. With the other side of
/// a two-thread benchmark pinned to the other CPU, neither thread waits behind the other on one core (unpinned,
/// runs on this 2-vCPU VM were bimodal: 25–35M or 100–150M ring events/s, by where the scheduler put them).
func pinned<T>(_ cpu: Int, _ body: () throws -> T) rethrows -> T {
    _ = tw_pin_thread(Int32(cpu))
    defer { _ = tw_unpin_thread() }
    return try body()
}

/// The CPUs a two-thread benchmark pins its producer and consumer to.
let producerCPU = 0, consumerCPU = 1

/// The floor the ring is measured against: the plainest correct single-producer single-consumer ring of 64-byte
/// events (two cursors on their own lines, acquire/release, events written and read in place, batches claimed
/// and released at once). No broadcast, no gating scan, no lossy readers, no parking: what is left is the cost of
/// moving the events' cache lines from one core to the other.
final class PlainSPSCRing: @unchecked Sendable {
    private let slots: UnsafeMutablePointer<Event>
    private let mask: Int
    private let cursors: UnsafeMutablePointer<Atomic<Int>>   // [0] head (producer), [16] tail (consumer), [32] closed
    let capacity: Int

    init(capacity: Int) {
        self.capacity = capacity
        mask = capacity - 1
        slots = .allocate(capacity: capacity)
        slots.initialize(repeating: .empty, count: capacity)
        let raw = UnsafeMutableRawPointer.allocate(byteCount: 48 * 8, alignment: 128)
        cursors = raw.bindMemory(to: Atomic<Int>.self, capacity: 48)
        for i in 0..<48 { (cursors + i).initialize(to: Atomic(0)) }
    }

    deinit {
        slots.deallocate()
        cursors.deinitialize(count: 48)
        UnsafeMutableRawPointer(cursors).deallocate()
    }

    /// Writes `count` events in place (`fill(i)` makes the i-th), waiting (spin, then yield) for room.
    @inline(__always)
    func publish(count: Int, _ fill: (Int) -> Event) {
        let head = cursors[0].load(ordering: .relaxed)
        var spins = 0
        while head + count - cursors[16].load(ordering: .acquiring) > capacity {
            spins += 1
            if spins > 256 { sched_yield() }
        }
        for i in 0..<count { slots[(head + i) & mask] = fill(i) }
        cursors[0].store(head + count, ordering: .releasing)
    }

    func close() { cursors[32].store(1, ordering: .releasing) }

    /// Hands every available event to `body`; -1 once closed and drained.
    @inline(__always)
    func poll(_ body: (Event) -> Void) -> Int {
        let tail = cursors[16].load(ordering: .relaxed)
        let head = cursors[0].load(ordering: .acquiring)
        if head == tail { return cursors[32].load(ordering: .acquiring) != 0 && cursors[0].load(ordering: .acquiring) == tail ? -1 : 0 }
        for s in tail..<head { body(slots[s & mask]) }
        cursors[16].store(head, ordering: .releasing)
        return head - tail
    }
}
