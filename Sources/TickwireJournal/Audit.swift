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
        /// The damage recovery would refuse to go past (in acknowledged records, or not a torn write); nil when
        /// every CRC and chain link checks up to a clean end or a torn tail.
        public var corruption: JournalCorruption?
        /// Acknowledged records that are damaged or missing, by the ack mark.
        public var lostAcknowledged: ClosedRange<UInt64>?
        /// Bytes of a torn (incomplete, never acknowledged) last group commit that recovery will cut off.
        public var tornTailBytes: Int64
        /// What the ack mark (`acked.mark`) says was acknowledged.
        public var ackMark: AckMark.Found
        public var ok: Bool { corruption == nil }
    }

    /// Checks every segment header, record CRC32C, sequence and hash-chain link, and that every record the ack
    /// mark says was acknowledged is there and unchanged.
    /// - Complexity: O(journal size).
    public static func verify(directory: String) throws(JournalError) -> Verification {
        let (scan, mark, verdict) = try scanAndAssess(directory) { _, _, _, _, _ in }
        var torn: Int64 = 0
        if verdict.tornTail, let p = scan.problem { torn = p.detail.writtenEnd - p.detail.offset }
        return Verification(records: scan.records, segments: scan.segments.count, lastSeq: scan.nextSeq &- 1,
                            headHash: scan.lastHash, corruption: verdict.corruption,
                            lostAcknowledged: verdict.lostAcknowledged, tornTailBytes: torn, ackMark: mark)
    }

    /// Visits every valid record from `seq` on, in order. Every record is read, so the whole chain up to `seq` is
    /// checked on the way.
    /// - Throws: `.corrupt` after the last record before damage that recovery would refuse (so a reader never
    ///   takes a damaged journal's prefix for the whole); a torn tail past the acknowledged records ends quietly.
    public static func forEach(directory: String, from seq: UInt64 = 1, _ body: (JournalRecord) -> Void) throws(JournalError) {
        let names = try JournalScan.segmentNames(directory)
        let (_, _, verdict) = try scanAndAssess(directory) { seg, bytes, off, recSeq, hash in
            if recSeq >= seq { body(JournalRecord(bytes, at: off, hash: hash, segment: names[seg].name)) }
        }
        if let c = verdict.corruption { throw .corrupt(c) }
    }

    /// The mark first, then the segments: on a live journal the mark never claims more than the scan then finds.
    private static func scanAndAssess(_ directory: String, visit: (Int, UnsafeRawBufferPointer, Int, UInt64, RecordHash) -> Void)
        throws(JournalError) -> (JournalScan, AckMark.Found, JournalScan.Assessment) {
        let mark = try AckMark.read(directory: directory)
        let scan = try JournalScan.run(directory, watch: mark.mark?.seq ?? 0, visit: visit)
        return (scan, mark, scan.assess(mark))
    }

    /// The record `seq`, or nil when it was never acknowledged and is not there. Reads only the segment that
    /// holds it (picked by the first sequences in the file names), checking CRCs and the chain within it from the
    /// link in its header.
    /// - Throws: `.corrupt` when damage stands where the record should be, or when the ack mark says it was
    ///   acknowledged and it is missing.
    public static func show(directory: String, seq: UInt64) throws(JournalError) -> JournalRecord? {
        let acked = try AckMark.read(directory: directory).mark
        func missing(_ segment: String, _ offset: Int64, _ why: String) -> JournalError {
            .corrupt(JournalCorruption(segment: segment, offset: offset, seq: seq,
                                       reason: why + (acked.map { " (acknowledged through \($0.seq) by the ack mark of \($0.time.iso8601))" } ?? "")))
        }
        let wasAcked = (acked?.seq ?? 0) >= seq
        guard let segment = try JournalScan.segmentNames(directory).last(where: { $0.firstSeq <= seq }) else {
            if wasAcked { throw missing(JournalFormat.segmentName(firstSeq: acked!.segmentFirstSeq), 0, "no segment holds record \(seq)") }
            return nil
        }
        let bytes = try FileIO.readFile(directory + "/" + segment.name)
        var found: JournalRecord?
        let scan = bytes.withUnsafeBytes { b in
            SegmentScanner.scan(b, firstSeq: segment.firstSeq,
                                prevHash: b.count >= JournalFormat.segmentHeaderSize ? RecordHash(loading: b, at: 32) : .zero) { off, recSeq, hash in
                if recSeq == seq { found = JournalRecord(b, at: off, hash: hash, segment: segment.name) }
            }
        }
        if let found { return found }
        if let p = scan.problem, p.seq <= seq, !p.tornTail || wasAcked {
            throw .corrupt(JournalCorruption(segment: segment.name, offset: p.offset, seq: p.seq, reason: p.reason))
        }
        if wasAcked { throw missing(segment.name, scan.endOffset, "record \(seq) is not in the journal but was acknowledged") }
        return nil
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
