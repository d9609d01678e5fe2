import Benchmark
import Foundation
import TickwireCore
import TickwireBenchSupport
import TickwireStore

// The store's hot paths on the synthetic market (SyntheticMarket, 100 symbols): appending to the log, scanning a
// sealed segment, and the as-of join. CI gates on mallocCountTotal only (wall clock moves 13–17% here).
private let market = SyntheticMarket(symbols: 100, quotes: 100_000, trades: 100_000)

/// A sealed store of the market, built once per process under /tmp.
private let sealedStore: String = {
    let dir = "/tmp/tickwire-store-benchmarks-\(getpid())"
    try? FileManager.default.removeItem(atPath: dir)
    let table = SubjectTable()
    let (q, t) = market.intern(into: table)
    let w = try! StoreWriter(directory: dir, subjects: table)
    market.generate(quoteIDs: q, tradeIDs: t) { try! w.append($0) }
    try! w.seal()
    try! w.close()
    return dir
}()

private let window = try! StoreQuery(subjects: SubjectPattern(">"), from: Nanos(SyntheticMarket.t0),
                                     to: Nanos(SyntheticMarket.t0 + Nanos.perDay / 2))

let benchmarks: @Sendable () -> Void = {
    let metrics: [BenchmarkMetric] = [.wallClock, .throughput, .mallocCountTotal]

    Benchmark("Store.append.200k", configuration: .init(metrics: metrics, scalingFactor: .one)) { benchmark in
        let table = SubjectTable()
        let (q, t) = market.intern(into: table)
        var events = [Event]()
        market.generate(quoteIDs: q, tradeIDs: t) { events.append($0) }
        let dir = "/tmp/tickwire-store-benchmarks-append-\(getpid())"
        for _ in benchmark.scaledIterations {
            try? FileManager.default.removeItem(atPath: dir)
            let w = try StoreWriter(directory: dir, subjects: table)
            benchmark.startMeasurement()
            try events.withUnsafeBufferPointer { try w.append(contentsOf: $0) }
            benchmark.stopMeasurement()
            try w.close()
        }
        try? FileManager.default.removeItem(atPath: dir)
    }

    Benchmark("Store.scan.sealed.200k", configuration: .init(metrics: metrics, scalingFactor: .one)) { benchmark in
        let reader = try StoreReader(directory: sealedStore)
        try reader.scan(window) { _ in }   // map and check the segment outside the measurement
        for _ in benchmark.scaledIterations {
            var sum: Int64 = 0
            try reader.scan(window) { batch in for i in 0..<batch.count { sum &+= batch.rows.a[i] } }
            blackHole(sum)
        }
    }

    Benchmark("Store.asofJoin.backward.100k", configuration: .init(metrics: metrics, scalingFactor: .one)) { benchmark in
        let reader = try StoreReader(directory: sealedStore)
        let join = try AsOfJoin(trades: SubjectPattern("MD.SYN.*.TRADE"), quotes: SubjectPattern("MD.SYN.*.QUOTE"),
                                from: window.from, to: window.to)
        try reader.scan(window) { _ in }
        for _ in benchmark.scaledIterations {
            var matched = 0
            try reader.asOfJoin(join) { b in for i in 0..<b.count where b.match[i] >= 0 { matched += 1 } }
            blackHole(matched)
        }
    }
}
