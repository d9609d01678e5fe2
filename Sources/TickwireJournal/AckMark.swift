import TickwireCore
#if canImport(Glibc)
import Glibc
#endif

/// How far the journal has acknowledged, kept on disk apart from the records it vouches for.
///
/// Recovery needs it to tell a torn tail (a group commit cut short by a crash: never acknowledged, safe to cut) from
/// damage to acknowledged records (never cut without an operator's word). Without it the two look alike at the end
/// of the last segment: a flipped byte in the last record, a zeroed sector, a truncated or deleted last segment.
///
/// File `journal/acked.mark`, 1,024 bytes: two 512-byte slots written in turn (`generation` odd in slot 1, even in
/// slot 0), each a single sector, so a write torn by a crash spoils at most the slot being written and the other
/// still holds the previous mark. The newer valid slot wins. Slot layout (little-endian):
///
/// | offset | size | field |
/// | --- | --- | --- |
/// | 0 | 8 | magic `TWJACK01` |
/// | 8 | 8 | generation (1 for the first mark) |
/// | 16 | 8 | acknowledged sequence: every record up to it was durable before it was acknowledged (0: none) |
/// | 24 | 8 | first sequence of the segment holding that record |
/// | 32 | 8 | byte offset just past that record in its segment |
/// | 40 | 8 | time the mark was written, ns |
/// | 48 | 32 | SHA-256 of that record (zeros when none) |
/// | 80 | 4 | CRC32C of bytes [0, 80) |
/// | 84 | 428 | zero |
public struct AckMark: Sendable, Equatable {
    public var generation: UInt64
    /// Every record up to this sequence was acknowledged (made durable, then reported).
    public var seq: UInt64
    public var segmentFirstSeq: UInt64
    public var endOffset: Int64
    public var time: Nanos
    public var hash: RecordHash

    static let fileName = "acked.mark"
    static let slotSize = 512
    static let fileSize = 2 * slotSize
    static let magic = JournalFormat.magic("TWJACK01")

    /// What the mark file held at open.
    public enum Found: Sendable, Equatable {
        case valid(AckMark)
        /// No file: a journal made before marks existed, or the file was removed.
        case missing
        /// Neither slot holds a valid mark.
        case damaged(reason: String)

        public var mark: AckMark? { if case .valid(let m) = self { m } else { nil } }
    }

    static func read(directory: String) throws(JournalError) -> Found {
        let path = directory + "/" + fileName
        guard FileIO.exists(path) else { return .missing }
        let bytes = try FileIO.readFile(path)
        var best: AckMark?
        var reasons: [String] = []
        for slot in 0..<2 {
            let start = slot * slotSize
            guard bytes.count >= start + slotSize else { reasons.append("slot \(slot) truncated"); continue }
            let decoded: AckMark? = bytes.withUnsafeBytes { b in
                let s = UnsafeRawBufferPointer(rebasing: b[start..<start + slotSize])
                guard UInt64(littleEndian: s.loadUnaligned(fromByteOffset: 0, as: UInt64.self)) == magic,
                      UInt32(littleEndian: s.loadUnaligned(fromByteOffset: 80, as: UInt32.self))
                        == crc32c(UnsafeRawBufferPointer(rebasing: s[0..<80])) else { return nil }
                return AckMark(generation: UInt64(littleEndian: s.loadUnaligned(fromByteOffset: 8, as: UInt64.self)),
                               seq: UInt64(littleEndian: s.loadUnaligned(fromByteOffset: 16, as: UInt64.self)),
                               segmentFirstSeq: UInt64(littleEndian: s.loadUnaligned(fromByteOffset: 24, as: UInt64.self)),
                               endOffset: Int64(littleEndian: s.loadUnaligned(fromByteOffset: 32, as: Int64.self)),
                               time: Nanos(Int64(littleEndian: s.loadUnaligned(fromByteOffset: 40, as: Int64.self))),
                               hash: RecordHash(loading: s, at: 48))
            }
            guard let decoded else { reasons.append("slot \(slot) has a bad magic or CRC32C"); continue }
            if best == nil || decoded.generation > best!.generation { best = decoded }
        }
        if let best { return .valid(best) }
        return .damaged(reason: "\(path): " + reasons.joined(separator: ", "))
    }

    /// The slot's 512 bytes.
    var bytes: [UInt8] {
        var out = [UInt8](repeating: 0, count: AckMark.slotSize)
        out.withUnsafeMutableBytes { b in
            b.storeBytes(of: AckMark.magic.littleEndian, toByteOffset: 0, as: UInt64.self)
            b.storeBytes(of: generation.littleEndian, toByteOffset: 8, as: UInt64.self)
            b.storeBytes(of: seq.littleEndian, toByteOffset: 16, as: UInt64.self)
            b.storeBytes(of: segmentFirstSeq.littleEndian, toByteOffset: 24, as: UInt64.self)
            b.storeBytes(of: endOffset.littleEndian, toByteOffset: 32, as: Int64.self)
            b.storeBytes(of: time.rawValue.littleEndian, toByteOffset: 40, as: Int64.self)
            hash.store(to: b, at: 48)
            let crc = crc32c(UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(b)[0..<80]))
            b.storeBytes(of: crc.littleEndian, toByteOffset: 80, as: UInt32.self)
        }
        return out
    }
}

/// The open mark file: writes each new mark into the slot the previous one did not use, then `fdatasync`s.
final class AckMarkFile {
    let path: String
    private let sync: Bool
    private var fd: Int32
    private(set) var last: AckMark

    /// Opens (or creates, sized and synced with the directory) the mark file and writes `mark` as its newest slot.
    /// - Parameter sync: `fdatasync` each mark (false only for a journal that does not sync its records either).
    init(directory: String, sync: Bool, mark: AckMark) throws(JournalError) {
        path = directory + "/" + AckMark.fileName
        self.sync = sync
        let existed = FileIO.exists(path)
        fd = try FileIO.open(path, O_RDWR | O_CREAT)
        last = mark
        do {
            if try FileIO.fileSize(fd, path: path) < Int64(AckMark.fileSize) {
                try FileIO.truncate(fd, to: Int64(AckMark.fileSize), path: path)
            }
            try write(mark)
            if !existed { try FileIO.syncDirectory(directory) }
        } catch {
            Glibc.close(fd)
            throw error
        }
    }

    deinit { close() }

    func close() { if fd >= 0 { Glibc.close(fd); fd = -1 } }

    /// Writes `mark` (its generation decides the slot) and syncs it.
    func write(_ mark: AckMark) throws(JournalError) {
        try FileIO.writeAll(fd, mark.bytes, at: Int64(Int(mark.generation % 2) * AckMark.slotSize), path: path)
        if sync { try FileIO.syncData(fd, path: path) }
        last = mark
    }
}
