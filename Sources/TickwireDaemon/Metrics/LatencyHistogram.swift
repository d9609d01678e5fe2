import Synchronization

/// A histogram of nanosecond durations that threads record into and any thread reads: power-of-two buckets, one
/// relaxed atomic add per sample (or, from a histogram's only recording thread, none: `recordAsOnlyWriter`), no
/// lock and no allocation. Coarse (a factor of two per bucket), which is what a Prometheus histogram shows anyway;
/// percentiles for benchmarks come from HdrHistogram.
public final class LatencyHistogram: @unchecked Sendable {
    /// Bucket i counts samples in [2^(i-1), 2^i) ns; bucket 0 counts zero and negative samples (clock steps).
    public static let bucketCount = 40   // up to 2^39 ns ≈ 550 s
    // Atomic is ~Copyable, so the buckets live in raw memory this object owns.
    private let buckets: UnsafeMutablePointer<Atomic<UInt64>>
    private let sumNanos = Atomic<UInt64>(0)

    public init() {
        buckets = .allocate(capacity: LatencyHistogram.bucketCount)
        for i in 0..<LatencyHistogram.bucketCount { (buckets + i).initialize(to: Atomic(0)) }
    }

    deinit {
        buckets.deinitialize(count: LatencyHistogram.bucketCount)
        buckets.deallocate()
    }

    @inline(__always)
    public func record(nanos: Int64) {
        buckets[Self.bucket(nanos)].wrappingAdd(1, ordering: .relaxed)
        sumNanos.wrappingAdd(Self.summand(nanos), ordering: .relaxed)
    }

    /// `record` for a histogram that only the calling thread records into (the publisher's): a relaxed load and
    /// store per word instead of a locked add, so the per-event path pays no locked instruction for its metrics.
    /// Readers see each word whole; a reader may see a sample's bucket before its sum.
    @inline(__always)
    public func recordAsOnlyWriter(nanos: Int64) {
        let i = Self.bucket(nanos)
        buckets[i].store(buckets[i].load(ordering: .relaxed) &+ 1, ordering: .relaxed)
        sumNanos.store(sumNanos.load(ordering: .relaxed) &+ Self.summand(nanos), ordering: .relaxed)
    }

    @inline(__always)
    private static func bucket(_ nanos: Int64) -> Int { nanos <= 0 ? 0 : min(bucketCount - 1, 64 - nanos.leadingZeroBitCount) }

    /// Clamped so a replayed capture's years-old known times cannot overflow the sum.
    @inline(__always)
    private static func summand(_ nanos: Int64) -> UInt64 { UInt64(min(max(0, nanos), 1 << 40)) }

    /// Cumulative counts at each upper bound (seconds), the sum (seconds) and the count.
    public func snapshot() -> (bounds: [(le: Double, count: UInt64)], sumSeconds: Double, count: UInt64) {
        var cumulative: UInt64 = 0
        var out: [(Double, UInt64)] = []
        for i in 0..<LatencyHistogram.bucketCount {
            cumulative &+= buckets[i].load(ordering: .relaxed)
            out.append((Double(UInt64(1) << UInt64(i)) / 1e9, cumulative))
        }
        return (out, Double(sumNanos.load(ordering: .relaxed)) / 1e9, cumulative)
    }

    /// The Prometheus text of this histogram (buckets from 1 µs up, where anything happens).
    public func prometheus(name: String, help: String, labels: String = "") -> String {
        let s = snapshot()
        let l = labels.isEmpty ? "" : labels + ","
        var out = "# HELP \(name) \(help)\n# TYPE \(name) histogram\n"
        for (le, count) in s.bounds where le >= 1e-6 {
            out += "\(name)_bucket{\(l)le=\"\(le)\"} \(count)\n"
        }
        out += "\(name)_bucket{\(l)le=\"+Inf\"} \(s.count)\n"
        out += "\(name)_sum\(labels.isEmpty ? "" : "{\(labels)}") \(s.sumSeconds)\n"
        out += "\(name)_count\(labels.isEmpty ? "" : "{\(labels)}") \(s.count)\n"
        return out
    }
}
