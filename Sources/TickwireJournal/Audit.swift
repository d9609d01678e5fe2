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
        if scan.problemIsTornTail, let p = scan.problem { torn = p.detail.writtenEnd - p.detail.offset }
        return Verification(records: scan.records, segments: scan.segments.count, lastSeq: scan.nextSeq &- 1,
                            headHash: scan.lastHash, corruption: scan.problemIsTornTail ? nil : scan.corruption,
                            tornTailBytes: torn)
    }

    /// Visits every valid record from `seq` on, in order (stops at the first damage, which `verify` reports).
    /// Every record is read, so the whole chain up to `seq` is checked on the way.
    public static func forEach(directory: String, from seq: UInt64 = 1, _ body: (JournalRecord) -> Void) throws(JournalError) {
        let names = try JournalScan.segmentNames(directory)
        _ = try JournalScan.run(directory) { seg, bytes, off, recSeq, hash in
            if recSeq >= seq { body(JournalRecord(bytes, at: off, hash: hash, segment: names[seg].name)) }
        }
    }

    /// The record `seq`, or nil. Reads only the segment that holds it (picked by the first sequences in the
    /// file names), checking CRCs and the chain within it from the link in its header.
    public static func show(directory: String, seq: UInt64) throws(JournalError) -> JournalRecord? {
        guard let segment = try JournalScan.segmentNames(directory).last(where: { $0.firstSeq <= seq }) else { return nil }
        let bytes = try FileIO.readFile(directory + "/" + segment.name)
        guard bytes.count >= JournalFormat.segmentHeaderSize else { return nil }
        var found: JournalRecord?
        let scan = bytes.withUnsafeBytes { b in
            SegmentScanner.scan(b, firstSeq: segment.firstSeq, prevHash: RecordHash(loading: b, at: 32)) { off, recSeq, hash in
                if recSeq == seq { found = JournalRecord(b, at: off, hash: hash, segment: segment.name) }
            }
        }
        if found == nil, let p = scan.problem, p.seq <= seq, !p.tornTail {
            throw .corrupt(JournalCorruption(segment: segment.name, offset: p.offset, seq: p.seq, reason: p.reason))
        }
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
