import CTickwireSys
import Synchronization
import TickwireCore
#if canImport(Glibc)
import Glibc
#endif

/// How a journal writes and what it does when it finds damage.

extension Journal {
    // MARK: Reading

    /// The durable record with sequence `seq`, found through the sparse index (one positioned read, then at
    /// most `indexEvery - 1` record headers skipped).
    /// - Throws: `.noSuchRecord` when it is not durable or does not exist; `.corrupt` when its CRC fails.
    public func record(_ seq: UInt64) throws(JournalError) -> JournalRecord {
        var reader = SegmentReader(directory: directory)
        defer { reader.close() }
        return try record(seq, reader: &reader)
    }

    /// Up to `limit` durable records from `seq` on, in order.
    public func records(from seq: UInt64, limit: Int) throws(JournalError) -> [JournalRecord] {
        var reader = SegmentReader(directory: directory)
        defer { reader.close() }
        return try records(from: seq, limit: limit, reader: &reader)
    }

    /// Lookups for a short run of `record` calls (a message of retried trades) that share an open segment and
    /// the last read's bytes.
    public func lookups() -> JournalLookups { JournalLookups(self) }

    func record(_ seq: UInt64, reader: inout SegmentReader) throws(JournalError) -> JournalRecord {
        let found = try records(from: seq, limit: 1, reader: &reader)
        guard let r = found.first, r.seq == seq else { throw .noSuchRecord(seq: seq) }
        return r
    }

    func records(from seq: UInt64, limit: Int, reader: inout SegmentReader) throws(JournalError) -> [JournalRecord] {
        lock.lock()
        let upTo = durableSeq
        guard seq >= 1, seq <= upTo, limit > 0, !index.isEmpty else { lock.unlock(); return [] }
        var lo = 0, hi = index.count - 1
        while lo < hi {
            let mid = (lo + hi + 1) / 2
            if index[mid].seq <= seq { lo = mid } else { hi = mid - 1 }
        }
        let start = index[lo]
        let segments = self.segments   // shared storage, not copied
        lock.unlock()
        return try reader.read(segments, from: start.segment, offset: start.offset, firstWanted: seq, upTo: upTo, limit: limit)
    }
}

/// Point lookups of durable records that come close together: a message of retried trades asks for records a
/// few apart, often consecutive (a client's resend after a failover). They share one open segment and the bytes
/// the last read brought in, so a run of them takes one `pread`, not an `open`, a `pread` and a `close` each.
///
/// Short-lived by design: bytes read for an earlier lookup are not read again, so damage done to the file since
/// is not seen through this object (a later one, or `Journal.record`, reads the file again). Make one for a
/// message's lookups and let it go. Not thread-safe.
public final class JournalLookups {
    private let journal: Journal
    private var reader: SegmentReader

    init(_ journal: Journal) {
        self.journal = journal
        reader = SegmentReader(directory: journal.directory)
    }

    deinit { reader.close() }

    /// As `Journal.record(_:)`.
    public func record(_ seq: UInt64) throws(JournalError) -> JournalRecord { try journal.record(seq, reader: &reader) }
}

/// Reads records sequentially from segment files, checking each CRC (the chain was checked at open).
///
/// Records are parsed from a window of the segment read in one `pread`, not read a header at a time: a lookup
/// through the sparse index skips up to `indexEvery - 1` records, which cost a system call each before (a
/// duplicate trade's answer took ~20 µs, most of it those reads). The first read is small (a lookup wants one
/// record); each further one doubles, up to `largestRead`, for a run of records.
///
/// A reader kept for several reads (`JournalLookups`) keeps its segment open and its window: bytes of records that
/// were durable when the window was read never change, and those past that point (records written since, or not
/// yet) are read again.
struct SegmentReader {
    let directory: String
    private var fd: Int32 = -1
    /// The open segment's name (its file's path is built from it once).
    private var openName = ""
    private var path = ""
    /// Bytes of the open segment from file offset `windowStart`; the first `windowCount` are the file's.
    private var window: [UInt8] = []
    private var windowStart: Int64 = 0, windowCount = 0
    /// The durable sequence when the window was read: a record after it there may have been unwritten then.
    private var windowUpTo: UInt64 = 0
    /// The durable sequence the current `read` trusts.
    private var upTo: UInt64 = 0
    private var readSize = 16 << 10
    static let largestRead = 256 << 10

    init(directory: String) { self.directory = directory }

    mutating func close() {
        if fd >= 0 { Glibc.close(fd); fd = -1 }
        openName = ""
        windowCount = 0
    }

    private mutating func open(_ name: String) throws(JournalError) {
        if fd >= 0 && name == openName { return }
        close()
        path = directory + "/" + name
        fd = try FileIO.open(path, O_RDONLY)
        openName = name
    }

    /// Makes the open segment's bytes `[off, off + count)` the window's, reading from `off` when they are not
    /// there yet. - Returns: how many of them the file has (fewer only at its end).
    private mutating func load(_ off: Int64, count: Int) throws(JournalError) -> Int {
        if off >= windowStart && off + Int64(count) <= windowStart + Int64(windowCount) { return count }
        let size = max(count, readSize)
        readSize = min(readSize * 2, Self.largestRead)
        if window.count < size { window = [UInt8](unsafeUninitializedCapacity: size) { _, n in n = size } }
        windowStart = off
        windowUpTo = upTo
        windowCount = try FileIO.pread(fd, into: &window, count: size, at: off, path: path)
        return min(count, windowCount)
    }

    /// Records `firstWanted…` (at most `limit`, none after `upTo`), starting the scan at `offset` in
    /// `segments[segmentIndex]`, a record at or before the first wanted.
    mutating func read(_ segments: [Journal.Segment], from segmentIndex: Int, offset: Int64, firstWanted: UInt64, upTo: UInt64,
                       limit: Int) throws(JournalError) -> [JournalRecord] {
        var out: [JournalRecord] = []
        var seg = segmentIndex, off = offset
        let headerSize = JournalFormat.recordHeaderSize
        self.upTo = upTo
        while out.count < limit && seg < segments.count {
            let name = segments[seg].name
            try open(name)
            let n = try load(off, count: headerSize)
            let at = Int(off - windowStart)
            // A header cut short by the end of the file reads as zeros past it.
            if n < headerSize { window.withUnsafeMutableBytes { _ = memset($0.baseAddress! + at + n, 0, headerSize - n) } }
            let (len, seq) = window.withUnsafeBytes { b in
                (Int(UInt32(littleEndian: b.loadUnaligned(fromByteOffset: at, as: UInt32.self))),
                 UInt64(littleEndian: b.loadUnaligned(fromByteOffset: at + 8, as: UInt64.self)))
            }
            let end = n == 0 || (seq == 0 && len == 0)
            // Read before a record now wanted was durable: what the window holds from here on may be older than
            // the file. (Read now, `windowUpTo` is `upTo` and this does not repeat.)
            if windowUpTo < upTo && (end || seq > windowUpTo) { windowCount = 0; continue }
            // The end of the file, or of the records in a pre-extended one (a record's sequence is never 0).
            if end { close(); seg += 1; off = Int64(JournalFormat.segmentHeaderSize); continue }
            if seq > upTo { break }
            let total = headerSize + len
            guard n == headerSize, len <= JournalFormat.maxPayload else {
                throw .corrupt(JournalCorruption(segment: name, offset: off, seq: seq, reason: "record header unreadable"))
            }
            if seq >= firstWanted {
                let got = try load(off, count: total)
                let at = Int(off - windowStart)
                let record: JournalRecord? = window.withUnsafeBytes { b in
                    guard got == total else { return nil }
                    let body = UnsafeRawBufferPointer(rebasing: b[at..<at + total])
                    guard UInt32(littleEndian: body.loadUnaligned(fromByteOffset: 4, as: UInt32.self))
                            == JournalFormat.recordCRC(body, at: 0, payloadLength: len) else { return nil }
                    var r = JournalRecord(body, at: 0, hash: RecordHash(sha256: body), segment: name)
                    r.offset = off
                    return r
                }
                guard let record else {
                    throw .corrupt(JournalCorruption(segment: name, offset: off, seq: seq, reason: "CRC32C mismatch on read"))
                }
                out.append(record)
            }
            off += Int64(total)
        }
        return out
    }
}
