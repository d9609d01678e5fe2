import TickwireCore

/// Read-only checks and views of a journal directory; safe while a daemon appends to it (they see a prefix).
public enum JournalAudit {
    /// What `verify` found.
    public struct Verification: Sendable, Equatable {
        public var records: Int
        public var segments: Int
        /// The last valid sequence (0 when empty).
        public var lastSeq: UInt64
        /// The SHA-256 of the last valid record: the head of the chain (zeros when empty).
        public var headHash: RecordHash
        /// The first damage found in the middle; nil when every CRC and chain link checks.
        public var corruption: JournalCorruption?
        /// Bytes of a torn (incomplete) last record that recovery will cut off.
        public var tornTailBytes: Int64
        public var ok: Bool { corruption == nil }
    }

    /// Checks every segment header, record CRC32C, sequence and hash-chain link.
    /// - Complexity: O(journal size).
    public static func verify(directory: String) throws(JournalError) -> Verification {
        let scan = try JournalScan.run(directory) { _, _, _, _, _ in }
        var torn: Int64 = 0
        if scan.problemIsTornTail, let p = scan.problem {
            let path = directory + "/" + scan.segments[p.segment].name
            torn = Int64((try? FileIO.readFile(path).count) ?? 0) - p.detail.offset
        }
        return Verification(records: scan.records, segments: scan.segments.count, lastSeq: scan.nextSeq &- 1,
                            headHash: scan.lastHash, corruption: scan.problemIsTornTail ? nil : scan.corruption,
                            tornTailBytes: torn)
    }

    /// Visits every valid record in order (stops at the first damage, which `verify` reports).
    public static func forEach(directory: String, from seq: UInt64 = 1, _ body: (JournalRecord) -> Void) throws(JournalError) {
        // Skip whole segments that end before `seq`: their first sequences are in their names.
        let names = try JournalScan.segmentNames(directory)
        var startSegment = 0
        for (i, n) in names.enumerated() where n.firstSeq <= seq { startSegment = i }
        var segmentIndex = -1
        var current = ""
        _ = try JournalScan.run(directory) { seg, bytes, off, recSeq, hash in
            if seg != segmentIndex { segmentIndex = seg; current = names[seg].name }
            if seg >= startSegment && recSeq >= seq { body(JournalRecord(bytes, at: off, hash: hash, segment: current)) }
        }
    }

    /// The record `seq`, or nil.
    public static func show(directory: String, seq: UInt64) throws(JournalError) -> JournalRecord? {
        var found: JournalRecord?
        try forEach(directory: directory, from: seq) { r in if r.seq == seq { found = r } }
        return found
    }

    /// The last `count` records.
    public static func tail(directory: String, count: Int) throws(JournalError) -> [JournalRecord] {
        var ring: [JournalRecord] = []
        try forEach(directory: directory) { r in
            ring.append(r)
            if ring.count > count { ring.removeFirst() }
        }
        return ring
    }

    /// One JSON object for a record: `seq`, times, hashes, segment and offset, and either `extra` fields (the
    /// caller's decoding of the payload, as `"key":value` JSON text) or the payload in hex.
    public static func jsonLine(_ r: JournalRecord, extra: String? = nil) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var hex = [UInt8]()
        if extra == nil {
            hex.reserveCapacity(r.payload.count * 2)
            for b in r.payload { hex.append(digits[Int(b >> 4)]); hex.append(digits[Int(b & 15)]) }
        }
        var s = "{\"seq\":\(r.seq),\"event_time\":\"\(r.eventTime.iso8601)\",\"known_time\":\"\(r.knownTime.iso8601)\","
        s += "\"segment\":\"\(r.segment)\",\"offset\":\(r.offset),\"prev_hash\":\"\(r.prevHash.hex)\",\"hash\":\"\(r.hash.hex)\","
        if let extra { s += extra } else { s += "\"payload_hex\":\"\(String(decoding: hex, as: UTF8.self))\"" }
        return s + "}"
    }
}
