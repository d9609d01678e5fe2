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
        let found = try records(from: seq, limit: 1)
        guard let r = found.first, r.seq == seq else { throw .noSuchRecord(seq: seq) }
        return r
    }

    /// Up to `limit` durable records from `seq` on, in order.
    public func records(from seq: UInt64, limit: Int) throws(JournalError) -> [JournalRecord] {
        lock.lock()
        let upTo = durableSeq
        guard seq >= 1, seq <= upTo, limit > 0, !index.isEmpty else { lock.unlock(); return [] }
        var lo = 0, hi = index.count - 1
        while lo < hi {
            let mid = (lo + hi + 1) / 2
            if index[mid].seq <= seq { lo = mid } else { hi = mid - 1 }
        }
        let start = index[lo]
        let names = segments[start.segment...].map(\.name)
        lock.unlock()
        var reader = SegmentReader(directory: directory, segments: names)
        defer { reader.close() }
        return try reader.read(from: 0, offset: start.offset, firstWanted: seq, upTo: upTo, limit: limit)
    }
}

/// Reads records sequentially from segment files, checking each CRC (the chain was checked at open).
///
/// Records are parsed from a window of the segment read in one `pread`, not read a header at a time: a lookup
/// through the sparse index skips up to `indexEvery - 1` records, which cost a system call each before (a
/// duplicate trade's answer took ~20 µs, most of it those reads). The first read is small (a lookup wants one
/// record); each further one doubles, up to `largestRead`, for a run of records.
struct SegmentReader {
    let directory: String
    let segments: [String]
    private var fd: Int32 = -1
    /// Bytes of the open segment from file offset `windowStart`; the first `windowCount` are the file's.
    private var window: [UInt8] = []
    private var windowStart: Int64 = 0, windowCount = 0
    private var readSize = 16 << 10
    static let largestRead = 256 << 10

    init(directory: String, segments: [String]) { self.directory = directory; self.segments = segments }

    mutating func close() {
        if fd >= 0 { Glibc.close(fd); fd = -1 }
        windowCount = 0
    }

    /// Makes the open segment's bytes `[off, off + count)` the window's, reading from `off` when they are not
    /// there yet. - Returns: how many of them the file has (fewer only at its end).
    private mutating func load(_ off: Int64, count: Int, path: String) throws(JournalError) -> Int {
        if off >= windowStart && off + Int64(count) <= windowStart + Int64(windowCount) { return count }
        let size = max(count, readSize)
        readSize = min(readSize * 2, Self.largestRead)
        if window.count < size { window = [UInt8](unsafeUninitializedCapacity: size) { _, n in n = size } }
        windowStart = off
        windowCount = try FileIO.pread(fd, into: &window, count: size, at: off, path: path)
        return min(count, windowCount)
    }

    mutating func read(from segmentIndex: Int, offset: Int64, firstWanted: UInt64, upTo: UInt64,
                       limit: Int) throws(JournalError) -> [JournalRecord] {
        var out: [JournalRecord] = []
        var seg = segmentIndex, off = offset
        let headerSize = JournalFormat.recordHeaderSize
        var path = ""
        close()
        while out.count < limit && seg < segments.count {
            let name = segments[seg]
            if fd < 0 {
                path = directory + "/" + name
                fd = try FileIO.open(path, O_RDONLY)
            }
            let n = try load(off, count: headerSize, path: path)
            let at = Int(off - windowStart)
            // A header cut short by the end of the file reads as zeros past it.
            if n < headerSize { window.withUnsafeMutableBytes { _ = memset($0.baseAddress! + at + n, 0, headerSize - n) } }
            let (len, seq) = window.withUnsafeBytes { b in
                (Int(UInt32(littleEndian: b.loadUnaligned(fromByteOffset: at, as: UInt32.self))),
                 UInt64(littleEndian: b.loadUnaligned(fromByteOffset: at + 8, as: UInt64.self)))
            }
            // The end of the file, or of the records in a pre-extended one (a record's sequence is never 0).
            if n == 0 || (seq == 0 && len == 0) { close(); seg += 1; off = Int64(JournalFormat.segmentHeaderSize); continue }
            if seq > upTo { break }
            let total = headerSize + len
            guard n == headerSize, len <= JournalFormat.maxPayload else {
                throw .corrupt(JournalCorruption(segment: name, offset: off, seq: seq, reason: "record header unreadable"))
            }
            if seq >= firstWanted {
                let got = try load(off, count: total, path: path)
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
