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
        let segs = segments
        lock.unlock()
        var reader = SegmentReader(directory: directory, segments: segs.map(\.name))
        defer { reader.close() }
        return try reader.read(from: start.segment, offset: start.offset, firstWanted: seq, upTo: upTo, limit: limit)
    }
}

/// Reads records sequentially from segment files, checking each CRC (the chain was checked at open).
struct SegmentReader {
    let directory: String
    let segments: [String]
    private var fd: Int32 = -1
    private var buffer = [UInt8](repeating: 0, count: 1 << 16)

    init(directory: String, segments: [String]) { self.directory = directory; self.segments = segments }

    mutating func close() { if fd >= 0 { Glibc.close(fd); fd = -1 } }

    mutating func read(from segmentIndex: Int, offset: Int64, firstWanted: UInt64, upTo: UInt64,
                       limit: Int) throws(JournalError) -> [JournalRecord] {
        var out: [JournalRecord] = []
        var seg = segmentIndex, off = offset
        close()
        while out.count < limit && seg < segments.count {
            let name = segments[seg], path = directory + "/" + name
            if fd < 0 { fd = try FileIO.open(path, O_RDONLY) }
            var header = [UInt8](repeating: 0, count: JournalFormat.recordHeaderSize)
            let n = try FileIO.pread(fd, into: &header, count: header.count, at: off, path: path)
            let len = header.withUnsafeBytes { Int(UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: 0, as: UInt32.self))) }
            let seq = header.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: 8, as: UInt64.self)) }
            // The end of the file, or of the records in a pre-extended one (a record's sequence is never 0).
            if n == 0 || (seq == 0 && len == 0) { close(); seg += 1; off = Int64(JournalFormat.segmentHeaderSize); continue }
            if seq > upTo { break }
            let total = JournalFormat.recordHeaderSize + len
            guard n == JournalFormat.recordHeaderSize, len <= JournalFormat.maxPayload else {
                throw .corrupt(JournalCorruption(segment: name, offset: off, seq: seq, reason: "record header unreadable"))
            }
            if seq >= firstWanted {
                if buffer.count < total { buffer = [UInt8](repeating: 0, count: total) }
                let got = try FileIO.pread(fd, into: &buffer, count: total, at: off, path: path)
                let record: JournalRecord? = buffer.withUnsafeBytes { b in
                    let body = UnsafeRawBufferPointer(rebasing: b[0..<total])
                    guard got == total,
                          UInt32(littleEndian: body.loadUnaligned(fromByteOffset: 4, as: UInt32.self))
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
