import TickwireCore
#if canImport(Glibc)
import Glibc
#endif

/// A named consumer's durable position in a journal (risk, downstream booking).
///
/// `next` hands out records after the read position; `commit(through:)` makes "everything up to here is
/// processed" durable (write a temporary file, `fdatasync`, `rename`, `fsync` the directory), so after a restart
/// the cursor resumes at the record after the last commit: nothing lost, nothing repeated that was committed.
///
/// File `cursors/NAME.cur`, 32 bytes: magic `TWJCUR01`, u64 committed sequence, i64 update time (ns),
/// u32 CRC32C of bytes [0,24), u32 zero.
public final class JournalCursor {
    public let name: String
    public let path: String
    private let journal: Journal
    /// The last sequence committed (0: nothing yet).
    public private(set) var committed: UInt64
    /// The last sequence handed out by `next`.
    public private(set) var position: UInt64

    static let magic = JournalFormat.magic("TWJCUR01")

    /// Opens the cursor `name`, creating it at the journal's start when it does not exist.
    /// - Throws: `.invalidCursorName`, `.cursorFile` when the file is damaged.
    public init(journal: Journal, name: String) throws(JournalError) {
        let valid = !name.isEmpty && name.utf8.count <= 64 && name.utf8.allSatisfy {
            ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x41 && $0 <= 0x5a) || ($0 >= 0x61 && $0 <= 0x7a) || $0 == 0x5f || $0 == 0x2d
        }
        guard valid else { throw .invalidCursorName(name) }
        self.journal = journal
        self.name = name
        let dir = journal.directory + "/cursors"
        try FileIO.makeDirectories(dir)
        path = dir + "/\(name).cur"
        committed = 0
        if FileIO.exists(path) {
            let bytes = try FileIO.readFile(path)
            guard bytes.count == 32 else { throw .cursorFile(path: path, reason: "\(bytes.count) bytes, expected 32") }
            let (magic, seq, crc, computed) = bytes.withUnsafeBytes { b in
                (UInt64(littleEndian: b.loadUnaligned(fromByteOffset: 0, as: UInt64.self)),
                 UInt64(littleEndian: b.loadUnaligned(fromByteOffset: 8, as: UInt64.self)),
                 UInt32(littleEndian: b.loadUnaligned(fromByteOffset: 24, as: UInt32.self)),
                 crc32c(UnsafeRawBufferPointer(rebasing: b[0..<24])))
            }
            guard magic == JournalCursor.magic else { throw .cursorFile(path: path, reason: "bad magic") }
            guard crc == computed else { throw .cursorFile(path: path, reason: "CRC32C mismatch") }
            committed = seq
        }
        position = committed
    }

    /// Up to `limit` durable records after the read position; advances the read position (not the commit).
    public func next(limit: Int = 1024) throws(JournalError) -> [JournalRecord] {
        let records = try journal.records(from: position &+ 1, limit: limit)
        if let last = records.last { position = last.seq }
        return records
    }

    /// Makes `seq` (and everything before it) durably processed; a restart resumes at `seq + 1`.
    public func commit(through seq: UInt64) throws(JournalError) {
        var bytes = [UInt8](repeating: 0, count: 32)
        bytes.withUnsafeMutableBytes { b in
            b.storeBytes(of: JournalCursor.magic.littleEndian, toByteOffset: 0, as: UInt64.self)
            b.storeBytes(of: seq.littleEndian, toByteOffset: 8, as: UInt64.self)
            b.storeBytes(of: Nanos.now().rawValue.littleEndian, toByteOffset: 16, as: Int64.self)
            let crc = crc32c(UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(b)[0..<24]))
            b.storeBytes(of: crc.littleEndian, toByteOffset: 24, as: UInt32.self)
        }
        try FileIO.replaceDurably(path, with: bytes)
        committed = seq
        if position < seq { position = seq }
    }

    /// Commits everything handed out by `next` so far.
    public func commit() throws(JournalError) { try commit(through: position) }
}
