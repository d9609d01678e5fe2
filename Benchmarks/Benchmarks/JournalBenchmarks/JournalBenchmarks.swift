import Benchmark
import Foundation
import TickwireCore
import TickwireJournal

// The journal's append path with sync off (copy, CRC32C, SHA-256 chain link under the append lock), one durable
// append (write + fdatasync through the sync thread), and the two checksums alone on a 128-byte record.
// Gate CI on mallocCountTotal only: wall-clock moves 13-17% between runs on these VMs.

private func scratch(_ tag: String) -> String {
    let path = NSTemporaryDirectory() + "tickwire-journal-bench-\(tag)-\(getpid())"
    try? FileManager.default.removeItem(atPath: path)
    return path
}

let benchmarks: @Sendable () -> Void = {
    let payload = [UInt8](repeating: 0x5a, count: 64)   // + 64-byte header = 128-byte records

    Benchmark("Journal.append.noSync", configuration: .init(metrics: [.throughput, .wallClock, .mallocCountTotal], scalingFactor: .kilo)) { benchmark in
        let dir = scratch("nosync")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let journal = try Journal(directory: dir, options: JournalOptions(sync: .none))
        defer { journal.close() }
        try payload.withUnsafeBytes { p in
            benchmark.startMeasurement()
            for _ in benchmark.scaledIterations { blackHole(try journal.append(p, eventTime: .zero)) }
            benchmark.stopMeasurement()
        }
    }

    Benchmark("Journal.appendDurably.one", configuration: .init(metrics: [.throughput, .wallClock, .mallocCountTotal], scalingFactor: .one, maxIterations: 200)) { benchmark in
        let dir = scratch("durable")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let journal = try Journal(directory: dir)
        defer { journal.close() }
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations { blackHole(try journal.appendDurably(payload, eventTime: .zero)) }
        benchmark.stopMeasurement()
    }

    Benchmark("Journal.crc32c.128B", configuration: .init(metrics: [.throughput, .mallocCountTotal], scalingFactor: .mega)) { benchmark in
        let record = [UInt8](repeating: 7, count: 128)
        record.withUnsafeBytes { b in
            for _ in benchmark.scaledIterations { blackHole(crc32c(b)) }
        }
    }
}
