import TickwireCore

/// The outcome of reading one segment's bytes front to back, checking every header, CRC, sequence and chain link.
struct SegmentScan {
    struct Problem {
        var offset: Int64
        var seq: UInt64
        var reason: String
        /// Whether the damage can be the torn tail of a group commit that was never acknowledged (when it is in
        /// the last segment): nothing valid follows it, or what follows lies within one unsynced group commit
        /// after a hole of never-written (zero) sectors. Otherwise it is corruption in the middle.
        var tornTail: Bool
        /// The end of the segment's written bytes (past the last non-zero byte): a torn tail is these bytes from
        /// `offset` on.
        var writtenEnd: Int64
    }
    /// The end of the last valid record: where appending continues. Zeros after it are pre-extension.
    var endOffset: Int64 = 0
    var nextSeq: UInt64
    var lastHash: RecordHash
    var records = 0
    var problem: Problem?
}

enum SegmentScanner {
    /// Scans a segment held in memory. `visit(offset, seq, hash)` sees each valid record in order.
    static func scan(_ b: UnsafeRawBufferPointer, firstSeq: UInt64, prevHash: RecordHash,
                     visit: (Int, UInt64, RecordHash) -> Void) -> SegmentScan {
        var s = SegmentScan(nextSeq: firstSeq, lastHash: prevHash)
        // Past this everything is zero. Found from the end, so it costs a step only over a pre-extended tail.
        let written = writtenEnd(b)
        func fail(_ offset: Int, _ reason: String, crcValid: Bool = false) -> SegmentScan {
            let torn: Bool
            if crcValid {
                torn = false   // a whole record with a valid CRC but the wrong place in the chain: never a torn write
            } else if let next = findValidRecord(b, after: offset, minSeq: s.nextSeq) {
                torn = written - offset <= Journal.maxUnsyncedBytes && hasZeroSector(b, from: offset, to: next)
            } else {
                torn = true
            }
            s.problem = .init(offset: Int64(offset), seq: s.nextSeq, reason: reason, tornTail: torn,
                              writtenEnd: Int64(max(written, offset)))
            return s
        }
        let H = JournalFormat.segmentHeaderSize
        if b.count < H { return fail(0, "segment header truncated (\(b.count) of \(H) bytes)") }
        if UInt64(littleEndian: b.loadUnaligned(fromByteOffset: 0, as: UInt64.self)) != JournalFormat.segmentMagic {
            return fail(0, "segment magic is not TWJSEG01")
        }
        let stored = UInt32(littleEndian: b.loadUnaligned(fromByteOffset: 12, as: UInt32.self))
        if stored != JournalFormat.segmentHeaderCRC(b) { return fail(0, "segment header CRC mismatch") }
        let headerSeq = UInt64(littleEndian: b.loadUnaligned(fromByteOffset: 16, as: UInt64.self))
        if headerSeq != firstSeq { return fail(0, "segment starts at seq \(headerSeq), expected \(firstSeq)", crcValid: true) }
        if RecordHash(loading: b, at: 32) != prevHash {
            return fail(0, "segment's previous-record hash does not match the chain", crcValid: true)
        }
        var off = H
        s.endOffset = Int64(off)
        while off < b.count {
            let left = b.count - off
            // Zeros from a record boundary to the end of the file: the unused part of a pre-extended segment.
            // (A record header is never zero: its sequence is at least 1.)
            if written <= off { return s }
            if left < JournalFormat.recordHeaderSize { return fail(off, "record header truncated (\(left) bytes)") }
            let len = Int(UInt32(littleEndian: b.loadUnaligned(fromByteOffset: off, as: UInt32.self)))
            if len > JournalFormat.maxPayload { return fail(off, "payload length \(len) exceeds \(JournalFormat.maxPayload)") }
            if len > left - JournalFormat.recordHeaderSize { return fail(off, "record of \(len) payload bytes runs past the end of the file") }
            let crc = UInt32(littleEndian: b.loadUnaligned(fromByteOffset: off + 4, as: UInt32.self))
            let computed = JournalFormat.recordCRC(b, at: off, payloadLength: len)
            if crc != computed { return fail(off, "CRC32C mismatch (stored \(hex32(crc)), computed \(hex32(computed)))") }
            let seq = UInt64(littleEndian: b.loadUnaligned(fromByteOffset: off + 8, as: UInt64.self))
            if seq != s.nextSeq { return fail(off, "sequence \(seq) where \(s.nextSeq) was expected", crcValid: true) }
            if RecordHash(loading: b, at: off + 32) != s.lastHash {
                return fail(off, "hash chain broken: prevHash is not the SHA-256 of record \(seq &- 1)", crcValid: true)
            }
            let end = off + JournalFormat.recordHeaderSize + len
            let hash = RecordHash(sha256: UnsafeRawBufferPointer(rebasing: b[off..<end]))
            visit(off, seq, hash)
            s.lastHash = hash
            s.nextSeq = seq &+ 1
            s.records += 1
            off = end
            s.endOffset = Int64(off)
        }
        return s
    }

    /// Where the first whole record with a valid CRC and a sequence at or after `minSeq` starts after `offset`,
    /// if any: damage followed by nothing valid is a torn tail.
    static func findValidRecord(_ b: UnsafeRawBufferPointer, after offset: Int, minSeq: UInt64) -> Int? {
        let H = JournalFormat.recordHeaderSize
        var p = offset + 1
        while p + H <= b.count {
            let len = Int(UInt32(littleEndian: b.loadUnaligned(fromByteOffset: p, as: UInt32.self)))
            if len <= JournalFormat.maxPayload && len <= b.count - p - H {
                let seq = UInt64(littleEndian: b.loadUnaligned(fromByteOffset: p + 8, as: UInt64.self))
                if seq >= minSeq && seq &- minSeq < (1 << 32) {
                    let crc = UInt32(littleEndian: b.loadUnaligned(fromByteOffset: p + 4, as: UInt32.self))
                    if crc == JournalFormat.recordCRC(b, at: p, payloadLength: len) { return p }
                }
            }
            p += 1
        }
        return nil
    }

    /// The offset just past the last non-zero byte (0 for an all-zero buffer).
    static func writtenEnd(_ b: UnsafeRawBufferPointer) -> Int {
        var end = b.count
        while end >= 8 && b.loadUnaligned(fromByteOffset: end - 8, as: UInt64.self) == 0 { end -= 8 }
        while end > 0 && b[end - 1] == 0 { end -= 1 }
        return end
    }

    /// Whether `[from, to)` holds a whole 512-byte-aligned sector of zeros: what a page the kernel had not yet
    /// written back leaves in a pre-extended (or newly allocated) file. A bit flip never does.
    static func hasZeroSector(_ b: UnsafeRawBufferPointer, from: Int, to: Int) -> Bool {
        let sector = JournalFormat.sectorSize
        var start = (from + sector - 1) / sector * sector
        while start + sector <= to {
            var zero = true
            var i = start
            while i < start + sector {
                if b.loadUnaligned(fromByteOffset: i, as: UInt64.self) != 0 { zero = false; break }
                i += 8
            }
            if zero { return true }
            start += sector
        }
        return false
    }

    static func hex32(_ v: UInt32) -> String {
        let s = String(v, radix: 16)
        return "0x" + String(repeating: "0", count: 8 - s.count) + s
    }
}

/// Every segment of a journal directory scanned in order, read-only.
struct JournalScan {
    struct Segment {
        var name: String
        var firstSeq: UInt64
        var prevHash: RecordHash
        var endOffset: Int64
    }
    var segments: [Segment] = []
    var nextSeq: UInt64 = 1
    var lastHash = RecordHash.zero
    var records = 0
    /// The first damage found and the segment (index into `segments`) it is in; nothing after it was scanned.
    var problem: (segment: Int, detail: SegmentScan.Problem)?
    /// Segment files after the damaged one (not scanned).
    var laterSegments: [String] = []

    /// Whether the damage is a torn tail: in the last segment with no valid record after it.
    var problemIsTornTail: Bool {
        guard let p = problem else { return false }
        return p.segment == segments.count - 1 && laterSegments.isEmpty && p.detail.tornTail
    }

    var corruption: JournalCorruption? {
        guard let p = problem else { return nil }
        return JournalCorruption(segment: segments[p.segment].name, offset: p.detail.offset, seq: p.detail.seq, reason: p.detail.reason)
    }

    /// Segment file names in the directory, ordered by first sequence.
    static func segmentNames(_ directory: String) throws(JournalError) -> [(name: String, firstSeq: UInt64)] {
        try FileIO.list(directory).compactMap { n in JournalFormat.firstSeq(segmentName: n).map { (n, $0) } }
            .sorted { $0.1 < $1.1 }
    }

    /// Reads every segment. `visit(segmentIndex, bytes, offset, seq, hash)` sees each valid record.
    static func run(_ directory: String,
                    visit: (Int, UnsafeRawBufferPointer, Int, UInt64, RecordHash) -> Void) throws(JournalError) -> JournalScan {
        var out = JournalScan()
        let names = try segmentNames(directory)
        for (i, entry) in names.enumerated() {
            let bytes = try FileIO.readFile(directory + "/" + entry.name)
            let prev = out.lastHash
            let scan = bytes.withUnsafeBytes { b in
                SegmentScanner.scan(b, firstSeq: out.nextSeq, prevHash: prev) { off, seq, hash in visit(i, b, off, seq, hash) }
            }
            out.segments.append(Segment(name: entry.name, firstSeq: out.nextSeq, prevHash: prev, endOffset: scan.endOffset))
            out.nextSeq = scan.nextSeq
            out.lastHash = scan.lastHash
            out.records += scan.records
            if let p = scan.problem {
                out.problem = (i, p)
                out.laterSegments = names[(i + 1)...].map(\.name)
                break
            }
        }
        return out
    }
}

extension JournalRecord {
    /// Decodes the (already validated) record at `offset`.
    init(_ b: UnsafeRawBufferPointer, at offset: Int, hash: RecordHash, segment: String) {
        let len = Int(UInt32(littleEndian: b.loadUnaligned(fromByteOffset: offset, as: UInt32.self)))
        seq = UInt64(littleEndian: b.loadUnaligned(fromByteOffset: offset + 8, as: UInt64.self))
        eventTime = Nanos(Int64(littleEndian: b.loadUnaligned(fromByteOffset: offset + 16, as: Int64.self)))
        knownTime = Nanos(Int64(littleEndian: b.loadUnaligned(fromByteOffset: offset + 24, as: Int64.self)))
        prevHash = RecordHash(loading: b, at: offset + 32)
        self.hash = hash
        let start = offset + JournalFormat.recordHeaderSize
        payload = Array(b[start..<start + len])
        self.segment = segment
        self.offset = Int64(offset)
    }
}
