import TickwireCore
#if canImport(Glibc)
import Glibc
#endif

/// A consumer's state as it was after one journal record, kept so that a restart replays only what follows.
///
/// File `journal/checkpoints/NAME.ckpt`: magic `TWSTCK01`, u64 sequence, the SHA-256 of that record (32 bytes),
/// u32 state length L, L bytes of state (the owner's format), u32 CRC32C of everything before it. Written as a
/// temporary file, `fdatasync`ed, renamed over the old one, directory synced: a crash leaves the old or the new.
/// A checkpoint counts only while the journal still holds that record with that hash (after an operator's
/// `--truncate` it may not): `load` checks it against the open journal.
public enum StateCheckpoint {
    static let magic = JournalFormat.magic("TWSTCK01")

    public struct Saved: Sendable, Equatable {
        public var seq: UInt64
        public var hash: RecordHash
        public var state: [UInt8]
    }

    static func path(_ journalDirectory: String, _ name: String) -> String { journalDirectory + "/checkpoints/\(name).ckpt" }

    /// Writes `state` as of record `seq` (whose SHA-256 is `hash`) durably.
    public static func save(journalDirectory: String, name: String, seq: UInt64, hash: RecordHash, state: [UInt8]) throws(JournalError) {
        try FileIO.makeDirectories(journalDirectory + "/checkpoints")
        var bytes = [UInt8](repeating: 0, count: 52)
        bytes.withUnsafeMutableBytes { b in
            b.storeBytes(of: magic.littleEndian, toByteOffset: 0, as: UInt64.self)
            b.storeBytes(of: seq.littleEndian, toByteOffset: 8, as: UInt64.self)
            hash.store(to: b, at: 16)
            b.storeBytes(of: UInt32(state.count).littleEndian, toByteOffset: 48, as: UInt32.self)
        }
        bytes += state
        let crc = bytes.withUnsafeBytes { crc32c($0) }
        withUnsafeBytes(of: crc.littleEndian) { bytes.append(contentsOf: $0) }
        try FileIO.replaceDurably(path(journalDirectory, name), with: bytes)
    }

    /// The checkpoint `name` if its file is whole and `journal` holds its record with its hash; nil otherwise
    /// (none yet, damaged, or ahead of a journal that was cut back), and the caller replays from the start.
    public static func load(journalDirectory: String, name: String, journal: Journal) -> Saved? {
        guard let bytes = try? FileIO.readFile(path(journalDirectory, name)), bytes.count >= 56 else { return nil }
        let saved: Saved? = bytes.withUnsafeBytes { b in
            let n = Int(UInt32(littleEndian: b.loadUnaligned(fromByteOffset: 48, as: UInt32.self)))
            guard UInt64(littleEndian: b.loadUnaligned(fromByteOffset: 0, as: UInt64.self)) == magic, bytes.count == 56 + n,
                  UInt32(littleEndian: b.loadUnaligned(fromByteOffset: 52 + n, as: UInt32.self))
                    == crc32c(UnsafeRawBufferPointer(rebasing: b[0..<52 + n])) else { return nil }
            return Saved(seq: UInt64(littleEndian: b.loadUnaligned(fromByteOffset: 8, as: UInt64.self)),
                         hash: RecordHash(loading: b, at: 16), state: Array(bytes[52..<52 + n]))
        }
        guard let saved else { return nil }
        if saved.seq == 0 { return saved.hash == .zero ? saved : nil }
        guard let record = try? journal.record(saved.seq), record.hash == saved.hash else { return nil }
        return saved
    }

    /// The sequence the checkpoint `name` claims, read without a journal (to choose where an open replays from).
    public static func claimedSeq(journalDirectory: String, name: String) -> UInt64? {
        guard let bytes = try? FileIO.readFile(path(journalDirectory, name)), bytes.count >= 16 else { return nil }
        return bytes.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: 8, as: UInt64.self)) }
    }
}
