import TickwireCore

/// Messages a replica owes its replicated log, kept on disk until they are back in it: the trades a rollback
/// cut from the journal (docs/ARCHITECTURE.md, "When the log changes its mind"). Written before the journal is
/// cut, so a crash between the two leaves the journal whole or the messages on disk; a restart reads every
/// pending file again.
///
/// File `journal/putback/STAMP.putback`: magic `TWPUTB01`, u32 count N, N × (u32 length L, L bytes), u32
/// CRC32C of everything before it. Written as a temporary file, `fdatasync`ed, renamed into place, directory
/// synced. Once every message in it is back, it is renamed `STAMP.putback.settled` (nothing is deleted).
public enum PutBackFile {
    static let magic = JournalFormat.magic("TWPUTB01")
    static let suffix = ".putback"

    static func folder(_ journalDirectory: String) -> String { journalDirectory + "/putback" }

    /// Writes `messages` durably; returns the file's name (within `journal/putback/`).
    public static func write(journalDirectory: String, messages: [[UInt8]]) throws(JournalError) -> String {
        let folder = folder(journalDirectory)
        try FileIO.makeDirectories(folder)
        var bytes = [UInt8](repeating: 0, count: 12)
        bytes.withUnsafeMutableBytes { b in
            b.storeBytes(of: magic.littleEndian, toByteOffset: 0, as: UInt64.self)
            b.storeBytes(of: UInt32(messages.count).littleEndian, toByteOffset: 8, as: UInt32.self)
        }
        for m in messages {
            withUnsafeBytes(of: UInt32(m.count).littleEndian) { bytes.append(contentsOf: $0) }
            bytes += m
        }
        let crc = bytes.withUnsafeBytes { crc32c($0) }
        withUnsafeBytes(of: crc.littleEndian) { bytes.append(contentsOf: $0) }
        // Named by time, and unique within the folder (two rollbacks in one nanosecond cannot happen, but a clock
        // stepped back could meet an older name).
        var name = "\(Nanos.now().rawValue)\(suffix)"
        while FileIO.exists(folder + "/" + name) || FileIO.exists(folder + "/" + name + ".settled") { name = "\(Nanos.now().rawValue)\(suffix)" }
        try FileIO.replaceDurably(folder + "/" + name, with: bytes)
        return name
    }

    /// Every pending file, oldest first, with its messages; `damaged` names the files that do not read whole
    /// (their messages are also in `journal/quarantine/`, where the rollback copied the cut records).
    public static func pending(journalDirectory: String) throws(JournalError) -> (files: [(name: String, messages: [[UInt8]])], damaged: [String]) {
        let folder = folder(journalDirectory)
        guard FileIO.exists(folder) else { return ([], []) }
        var files: [(String, [[UInt8]])] = [], damaged: [String] = []
        let names = try FileIO.list(folder).filter { $0.hasSuffix(suffix) }
            .sorted { (UInt64($0.dropLast(suffix.count)) ?? 0) < (UInt64($1.dropLast(suffix.count)) ?? 0) }
        for name in names {
            let bytes = try FileIO.readFile(folder + "/" + name)
            if let messages = parse(bytes) { files.append((name, messages)) } else { damaged.append(name) }
        }
        return (files, damaged)
    }

    static func parse(_ bytes: [UInt8]) -> [[UInt8]]? {
        bytes.withUnsafeBytes { b -> [[UInt8]]? in
            guard b.count >= 16, UInt64(littleEndian: b.loadUnaligned(fromByteOffset: 0, as: UInt64.self)) == magic,
                  UInt32(littleEndian: b.loadUnaligned(fromByteOffset: b.count - 4, as: UInt32.self))
                    == crc32c(UnsafeRawBufferPointer(rebasing: b[0..<b.count - 4])) else { return nil }
            let count = Int(UInt32(littleEndian: b.loadUnaligned(fromByteOffset: 8, as: UInt32.self)))
            var messages: [[UInt8]] = [], at = 12
            messages.reserveCapacity(min(count, b.count / 4))
            for _ in 0..<count {
                guard at + 4 <= b.count - 4 else { return nil }
                let n = Int(UInt32(littleEndian: b.loadUnaligned(fromByteOffset: at, as: UInt32.self)))
                at += 4
                guard n <= b.count - 4 - at else { return nil }
                messages.append(Array(b[at..<at + n]))
                at += n
            }
            return at == b.count - 4 ? messages : nil
        }
    }

    /// Marks a file's messages as all back in the log (renamed `….settled`).
    public static func settle(journalDirectory: String, name: String) throws(JournalError) {
        let folder = folder(journalDirectory)
        try FileIO.rename(folder + "/" + name, folder + "/" + name + ".settled")
        try FileIO.syncDirectory(folder)
    }
}
