import Foundation
import TickwireCore
import TickwireStore
import CTickwireSys

/// The read cost of corrections (docs/STORAGE.md, "Corrections"), in `tickwire-bench store`: a fresh reader
/// scanning every event of a correction-free store (today's path plus the one `access` check for a corrections
/// log per partition opened), the price of that check alone, and the same scan after one correction in every
/// partition: reading the corrected segment `tickwire correct` leaves beside the sealed one, and without it
/// (each reader then rebuilds the partition in memory with its versions, as for a partition with an open log).
enum CorrectionBench {
    /// What corrections cost a read (`tickwire-bench store`, key `corrections`).
    struct Cost: Codable, Sendable {
        var rows: Int, partitions: Int, corrections: Int
        var freshReaderScanSeconds: Double, checkNsPerPartition: Double, checkShareOfScan: Double
        var correctedScanSeconds: Double, correctedRatioVsPlain: Double
        var rebuiltScanSeconds: Double, rebuiltRatioVsPlain: Double
    }

    static func measure(store: String, query: StoreQuery, runs: Int) throws -> Cost {
        // A copy of the sealed store to correct (hard links: the sealed files are never written again).
        let corrected = store + "-corrected"
        try? FileManager.default.removeItem(atPath: corrected)
        try link(store, corrected)
        defer { try? FileManager.default.removeItem(atPath: corrected) }
        var requests = [CorrectionRequest]()
        let first = try StoreReader(directory: corrected)
        var seen = Set<String>()
        try first.replay(query) { e in
            let partition = e.subject.split(separator: ".").prefix(2).joined(separator: ".") + "@\(e.event.eventTime.rawValue / Nanos.perDay)"
            guard e.event.kind == .quote, seen.insert(partition).inserted else { return }
            requests.append(CorrectionRequest(line: requests.count + 1, subject: e.subject, eventTime: e.event.eventTime,
                                              knownTime: e.event.knownTime, operation: .replace(["bid": e.event.a - 1]),
                                              author: "bench", reason: "one correction per partition"))
        }
        try StoreCorrections.apply(store: corrected, requests)

        func scan(_ dir: String) throws -> (Double, Int) {
            let t0 = tw_monotonic_ns()
            let reader = try StoreReader(directory: dir)
            var rows = 0, sum: Int64 = 0
            try reader.scan(query) { b in
                for i in 0..<b.count { sum &+= b.rows.a[i] }
                rows += b.count
            }
            _ = sum
            return (Double(tw_monotonic_ns() - t0) / 1e9, rows)
        }
        var plain = [Double](), withCorrections = [Double](), rows = 0
        for _ in 0..<max(1, runs) {
            let (p, n) = try scan(store)
            let (c, _) = try scan(corrected)
            plain.append(p); withCorrections.append(c); rows = n
        }
        // Without the corrected segments: every reader rebuilds.
        try removeCorrectedSegments(corrected)
        var rebuilt = [Double]()
        for _ in 0..<max(1, runs) { rebuilt.append(try scan(corrected).0) }
        // The check itself: one access(2) per partition opened.
        let partitions = max(1, requests.count)
        let probe = store + "/no-such-corrections.twc"
        let c0 = tw_monotonic_ns()
        for _ in 0..<100_000 { _ = access(probe, F_OK) }
        let checkNs = Double(tw_monotonic_ns() - c0) / 100_000
        let best = { (xs: [Double]) in xs.min() ?? .nan }
        return Cost(rows: rows, partitions: partitions, corrections: requests.count,
                    freshReaderScanSeconds: best(plain), checkNsPerPartition: checkNs,
                    checkShareOfScan: checkNs * Double(partitions) / 1e9 / best(plain),
                    correctedScanSeconds: best(withCorrections), correctedRatioVsPlain: best(withCorrections) / best(plain),
                    rebuiltScanSeconds: best(rebuilt), rebuiltRatioVsPlain: best(rebuilt) / best(plain))
    }

    static func removeCorrectedSegments(_ dir: String) throws {
        let fm = FileManager.default
        for name in try fm.contentsOfDirectory(atPath: dir) {
            var isDir: ObjCBool = false
            _ = fm.fileExists(atPath: dir + "/" + name, isDirectory: &isDir)
            guard isDir.boolValue else { continue }
            if name.hasPrefix("corrected-") { try fm.removeItem(atPath: dir + "/" + name) } else { try removeCorrectedSegments(dir + "/" + name) }
        }
    }

    /// Mirrors a directory tree with hard links.
    static func link(_ from: String, _ to: String) throws {
        let fm = FileManager.default
        try fm.createDirectory(atPath: to, withIntermediateDirectories: true)
        for name in try fm.contentsOfDirectory(atPath: from) {
            var isDir: ObjCBool = false
            _ = fm.fileExists(atPath: from + "/" + name, isDirectory: &isDir)
            if isDir.boolValue { try link(from + "/" + name, to + "/" + name) } else { try fm.linkItem(atPath: from + "/" + name, toPath: to + "/" + name) }
        }
    }
}
