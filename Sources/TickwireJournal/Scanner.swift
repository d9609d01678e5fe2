import TickwireCore
#if canImport(Glibc)
import Glibc
#endif

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
        let H = JournalFormat.segmentHeaderSize
        // Past this everything is zero. Found from the end, so it costs a step only over a pre-extended tail.
        let written = writtenEnd(b)
        /// `shape`: what the damaged bytes look like. A torn write leaves bytes unwritten (zeros from where it
        /// stopped, or a short file); bytes that were written but differ are never a torn write.
        func fail(_ offset: Int, _ reason: String, shape: DamageShape = .record) -> SegmentScan {
            let torn: Bool
            switch shape {
            case .crcValid:
                torn = false   // a whole record with a valid CRC but the wrong place in the chain: never a torn write
            case .segmentHeader where !(b.count < H || isZero(b, from: 0, to: H)):
                torn = false   // a header that was written and is wrong
            case .record where !looksTorn(b, at: offset):
                torn = false   // a flipped bit, a changed byte: damage, whatever follows
            default:
                if let next = findValidRecord(b, after: offset, minSeq: s.nextSeq) {
                    torn = written - offset <= Journal.maxUnsyncedBytes && hasZeroSector(b, from: offset, to: next)
                } else {
                    torn = true
                }
            }
            s.problem = .init(offset: Int64(offset), seq: s.nextSeq, reason: reason, tornTail: torn,
                              writtenEnd: Int64(max(written, offset)))
            return s
        }
        if b.count < H { return fail(0, "segment header truncated (\(b.count) of \(H) bytes)", shape: .segmentHeader) }
        if UInt64(littleEndian: b.loadUnaligned(fromByteOffset: 0, as: UInt64.self)) != JournalFormat.segmentMagic {
            return fail(0, "segment magic is not TWJSEG01", shape: .segmentHeader)
        }
        let stored = UInt32(littleEndian: b.loadUnaligned(fromByteOffset: 12, as: UInt32.self))
        if stored != JournalFormat.segmentHeaderCRC(b) { return fail(0, "segment header CRC mismatch", shape: .segmentHeader) }
        let headerSeq = UInt64(littleEndian: b.loadUnaligned(fromByteOffset: 16, as: UInt64.self))
        if headerSeq != firstSeq { return fail(0, "segment starts at seq \(headerSeq), expected \(firstSeq)", shape: .crcValid) }
        if RecordHash(loading: b, at: 32) != prevHash {
            return fail(0, "segment's previous-record hash does not match the chain", shape: .crcValid)
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
            if seq != s.nextSeq { return fail(off, "sequence \(seq) where \(s.nextSeq) was expected", shape: .crcValid) }
            if RecordHash(loading: b, at: off + 32) != s.lastHash {
                return fail(off, "hash chain broken: prevHash is not the SHA-256 of record \(seq &- 1)", shape: .crcValid)
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

    enum DamageShape { case record, segmentHeader, crcValid }

    /// Whether the record at `offset` (whose CRC failed) looks like a write that did not reach the disk: the file
    /// ends inside it, or its bytes are zero from its start or from a sector boundary to its end. A torn write
    /// leaves what was there before — zeros of a pre-extended or newly allocated file — and devices write
    /// whole sectors; a flipped bit or a changed byte leaves no such run and is damage, never a torn tail.
    static func looksTorn(_ b: UnsafeRawBufferPointer, at offset: Int) -> Bool {
        let H = JournalFormat.recordHeaderSize
        if b.count - offset < H { return true }
        let len = Int(UInt32(littleEndian: b.loadUnaligned(fromByteOffset: offset, as: UInt32.self)))
        let end = len <= JournalFormat.maxPayload ? offset + H + len : offset + H
        if end > b.count { return true }
        var zerosFrom = end
        while zerosFrom > offset && b[zerosFrom - 1] == 0 { zerosFrom -= 1 }
        if zerosFrom == end { return false }
        if zerosFrom == offset { return true }
        let sector = JournalFormat.sectorSize
        return (zerosFrom + sector - 1) / sector * sector < end
    }

    static func isZero(_ b: UnsafeRawBufferPointer, from: Int, to: Int) -> Bool {
        var i = from
        while i < min(to, b.count) { if b[i] != 0 { return false }; i += 1 }
        return true
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

    /// Segments (the first ones) whose records were not read: see `run(headersOnlyBefore:)`.
    var headersOnly = 0
    /// The SHA-256 of the record `run` was asked to watch (the one an ack mark names), if it was read.
    var watchedHash: RecordHash?

    /// How the scan stands against the ack mark read before it.
    struct Assessment {
        /// Damage the journal must not go past on its own: in acknowledged records, or anything that is not a torn
        /// write. Nil when the journal is whole or ends in a torn tail.
        var corruption: JournalCorruption?
        /// Acknowledged records that are damaged or missing (when `corruption` is set and the mark says so).
        var lostAcknowledged: ClosedRange<UInt64>?
        /// The damage found is a torn tail past everything acknowledged: recovery may cut it.
        var tornTail: Bool
    }

    /// Judges the scan by the ack mark: nothing at or before the acknowledged sequence may be missing, damaged or
    /// different, and without a valid mark no damage is taken for a torn tail.
    func assess(_ mark: AckMark.Found) -> Assessment {
        let lastGood = nextSeq &- 1
        switch mark {
        case .valid(let m):
            if m.seq > lastGood {
                let lost = (lastGood + 1)...m.seq
                let acked = "records \(lost.lowerBound)…\(lost.upperBound) were acknowledged (ack mark of \(m.time.iso8601))"
                if let c = corruption {
                    var c = c
                    c.reason += "; \(acked) and are lost past this point"
                    return Assessment(corruption: c, lostAcknowledged: lost, tornTail: false)
                }
                let markSegment = JournalFormat.segmentName(firstSeq: m.segmentFirstSeq)
                if !segments.contains(where: { $0.name == markSegment }) {
                    return Assessment(corruption: JournalCorruption(segment: markSegment, offset: 0, seq: lost.lowerBound,
                                                                    reason: "segment file is missing; \(acked)"),
                                      lostAcknowledged: lost, tornTail: false)
                }
                let last = segments.last!
                return Assessment(corruption: JournalCorruption(segment: last.name, offset: last.endOffset, seq: lost.lowerBound,
                                                                reason: "the journal ends at record \(lastGood) but \(acked): the file was cut short"),
                                  lostAcknowledged: lost, tornTail: false)
            }
            if m.seq > 0 && watchedHash != m.hash {
                return Assessment(corruption: JournalCorruption(segment: JournalFormat.segmentName(firstSeq: m.segmentFirstSeq),
                                                                offset: m.endOffset, seq: m.seq,
                                                                reason: "record \(m.seq) is not the one acknowledged: its SHA-256 differs from the ack mark's"),
                                  lostAcknowledged: m.seq...m.seq, tornTail: false)
            }
            return Assessment(corruption: problemIsTornTail ? nil : corruption, lostAcknowledged: nil, tornTail: problemIsTornTail)
        case .missing, .damaged:
            guard var c = corruption else { return Assessment(corruption: nil, lostAcknowledged: nil, tornTail: false) }
            if case .damaged(let why) = mark { c.reason += "; the ack mark is damaged (\(why)), so acknowledged records cannot be told from a torn tail" }
            else { c.reason += "; there is no ack mark (\(AckMark.fileName)), so acknowledged records cannot be told from a torn tail" }
            return Assessment(corruption: c, lostAcknowledged: nil, tornTail: false)
        }
    }

    /// Segment file names in the directory, ordered by first sequence.
    static func segmentNames(_ directory: String) throws(JournalError) -> [(name: String, firstSeq: UInt64)] {
        try FileIO.list(directory).compactMap { n in JournalFormat.firstSeq(segmentName: n).map { (n, $0) } }
            .sorted { $0.1 < $1.1 }
    }

    /// Reads every segment. `visit(segmentIndex, bytes, offset, seq, hash)` sees each valid record.
    /// - Parameters:
    ///   - watch: a sequence whose record's SHA-256 is kept in `watchedHash` (an ack mark's).
    ///   - headersOnlyBefore: segments whose records all come before this sequence (by the next segment's name)
    ///     have only their 64-byte header read and checked (CRC, first sequence); their records are neither read
    ///     nor visited, and `headersOnly` counts them. The first segment whose header does not check is scanned
    ///     whole, and so is everything after it. 1 (the default) reads everything.
    static func run(_ directory: String, watch: UInt64 = 0, headersOnlyBefore: UInt64 = 1,
                    visit: (Int, UnsafeRawBufferPointer, Int, UInt64, RecordHash) -> Void) throws(JournalError) -> JournalScan {
        var out = JournalScan()
        var watched: RecordHash?
        let names = try segmentNames(directory)
        var skipping = true
        for (i, entry) in names.enumerated() {
            let path = directory + "/" + entry.name
            if skipping, i + 1 < names.count, names[i + 1].firstSeq <= headersOnlyBefore,
               let header = try readHeader(path), header.firstSeq == entry.firstSeq, header.firstSeq == out.nextSeq {
                out.segments.append(Segment(name: entry.name, firstSeq: header.firstSeq, prevHash: header.prevHash, endOffset: -1))
                out.nextSeq = names[i + 1].firstSeq
                out.records += Int(names[i + 1].firstSeq - header.firstSeq)
                out.headersOnly += 1
                continue
            }
            // The first segment read whole takes its chain link from its own header when earlier ones were not read.
            if skipping && out.headersOnly > 0, let header = try readHeader(path) { out.lastHash = header.prevHash }
            skipping = false
            let bytes = try FileIO.readFile(path)
            let prev = out.lastHash
            let scan = bytes.withUnsafeBytes { b in
                SegmentScanner.scan(b, firstSeq: out.nextSeq, prevHash: prev) { off, seq, hash in
                    if seq == watch { watched = hash }
                    visit(i, b, off, seq, hash)
                }
            }
            out.watchedHash = watched
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

    /// A segment's header when its magic and CRC check; nil otherwise.
    static func readHeader(_ path: String) throws(JournalError) -> (firstSeq: UInt64, prevHash: RecordHash)? {
        let fd = try FileIO.open(path, O_RDONLY)
        defer { Glibc.close(fd) }
        var header = [UInt8](repeating: 0, count: JournalFormat.segmentHeaderSize)
        guard try FileIO.pread(fd, into: &header, count: header.count, at: 0, path: path) == header.count else { return nil }
        return header.withUnsafeBytes { b in
            guard UInt64(littleEndian: b.loadUnaligned(fromByteOffset: 0, as: UInt64.self)) == JournalFormat.segmentMagic,
                  UInt32(littleEndian: b.loadUnaligned(fromByteOffset: 12, as: UInt32.self)) == JournalFormat.segmentHeaderCRC(b)
            else { return nil }
            return (UInt64(littleEndian: b.loadUnaligned(fromByteOffset: 16, as: UInt64.self)), RecordHash(loading: b, at: 32))
        }
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
