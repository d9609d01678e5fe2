import TickwireCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The append log of an open partition (docs/STORAGE.md, "Append log"): a sequence of blocks, each with a
/// CRC-32C over its header and payload, so a torn or partly written tail is found and cut on recovery.
///
/// ```
/// off size block header (24 bytes, little-endian)
///   0   4  magic "TWLB"
///   4   2  version (1)
///   6   2  reserved, 0
///   8   4  subject definition bytes (S)
///  12   4  event count (N)
///  16   4  reserved, 0
///  20   4  CRC-32C of bytes 0..<20 then of the payload
///  24   S  subject definitions: u32 local id, u16 length, UTF-8 text; repeated
///   …      zero padding to a multiple of 8
///   …  64N events: `Event`'s 64-byte layout with `subjectID` the log-local id
/// ```
enum AppendLog {
    static let magic: UInt32 = 0x424C_5754 // "TWLB" little-endian
    static let version: UInt16 = 1
    static let headerSize = 24
    static let eventSize = 64

    /// What a log holds up to its last whole, checked block.
    struct Contents {
        var subjects: [String] = []
        /// Events in arrival order; `subjectID` indexes `subjects`.
        var events: [Event] = []
        var blocks = 0
        /// Bytes of whole, valid blocks; anything after is a torn tail.
        var validBytes = 0
        var tornBytes = 0
        var tornReason: String?
    }

    static func read(path: String) throws(StoreError) -> Contents {
        let map = try MappedFile(path: path)
        return read(map.bytes)
    }

    static func read(_ p: UnsafeRawBufferPointer) -> Contents {
        var out = Contents()
        var offset = 0
        func torn(_ why: String) { out.tornBytes = p.count - offset; out.tornReason = why }
        while offset < p.count {
            guard p.count - offset >= headerSize else { torn("a partial block header"); break }
            func u32(_ o: Int) -> UInt32 { UInt32(littleEndian: p.loadUnaligned(fromByteOffset: offset + o, as: UInt32.self)) }
            guard u32(0) == magic else { torn("no block magic"); break }
            guard UInt16(littleEndian: p.loadUnaligned(fromByteOffset: offset + 4, as: UInt16.self)) == version else {
                torn("an unknown block version"); break
            }
            let defBytes = Int(u32(8)), count = Int(u32(12))
            let payload = (defBytes + 7) & ~7 + count * eventSize
            guard defBytes <= 1 << 24, count <= 1 << 24, p.count - offset - headerSize >= payload else {
                torn("a block longer than the file"); break
            }
            var crc = CRC32C.of(UnsafeRawBufferPointer(rebasing: p[offset..<offset + 20]))
            crc = CRC32C.of(UnsafeRawBufferPointer(rebasing: p[offset + headerSize..<offset + headerSize + payload]), continuing: crc)
            guard crc == u32(20) else { torn("a block checksum mismatch"); break }
            // Definitions, then events; a block that fails a check is treated as torn with all after it.
            var subjects = out.subjects
            var d = offset + headerSize
            let defEnd = d + defBytes
            var ok = true
            while d < defEnd {
                guard defEnd - d >= 6 else { ok = false; break }
                let id = UInt32(littleEndian: p.loadUnaligned(fromByteOffset: d, as: UInt32.self))
                let len = Int(UInt16(littleEndian: p.loadUnaligned(fromByteOffset: d + 4, as: UInt16.self)))
                guard id == subjects.count, defEnd - d - 6 >= len else { ok = false; break }
                let text = String(decoding: UnsafeRawBufferPointer(rebasing: p[d + 6..<d + 6 + len]), as: UTF8.self)
                guard (try? Subject(text)) != nil else { ok = false; break }
                subjects.append(text)
                d += 6 + len
            }
            guard ok else { torn("a bad subject definition"); break }
            var events = [Event]()
            events.reserveCapacity(count)
            var e = offset + headerSize + (defBytes + 7) & ~7
            for _ in 0..<count {
                guard let event = decodeEvent(p, at: e), Int(event.subjectID) < subjects.count else { ok = false; break }
                events.append(event)
                e += eventSize
            }
            guard ok else { torn("an event with an unknown kind or subject"); break }
            out.subjects = subjects
            out.events.append(contentsOf: events)
            out.blocks += 1
            offset += headerSize + payload
            out.validBytes = offset
        }
        return out
    }

    /// Zeros for the padding after a block's subject definitions.
    static let zeroPadding = [UInt8](repeating: 0, count: 8)

    /// The 24-byte header of a block of `count` events: `definitions` (unpadded) and `events` are its payload,
    /// with zero padding between them that the checksum covers.
    static func blockHeader(definitions: UnsafeRawBufferPointer, events: UnsafeRawBufferPointer, count: Int) -> [UInt8] {
        var header = [UInt8](repeating: 0, count: headerSize)
        func put32(_ v: UInt32, _ o: Int) { withUnsafeBytes(of: v.littleEndian) { for i in 0..<4 { header[o + i] = $0[i] } } }
        put32(magic, 0)
        header[4] = UInt8(version & 0xff); header[5] = UInt8(version >> 8)
        put32(UInt32(definitions.count), 8)
        put32(UInt32(count), 12)
        var crc = header.withUnsafeBytes { CRC32C.of(UnsafeRawBufferPointer(rebasing: $0[0..<20])) }
        crc = CRC32C.of(definitions, continuing: crc)
        crc = zeroPadding.withUnsafeBytes { CRC32C.of(UnsafeRawBufferPointer(rebasing: $0[0..<(8 - definitions.count % 8) % 8]), continuing: crc) }
        crc = CRC32C.of(events, continuing: crc)
        put32(crc, 20)
        return header
    }

    /// Writes the 64-byte record field by field: an enum's in-memory tag is not its raw value, so the struct's
    /// own bytes are never stored.
    @inline(__always)
    static func encodeEvent(_ e: Event, subject: UInt32, at p: UnsafeMutableRawPointer) {
        p.storeBytes(of: subject.littleEndian, toByteOffset: 0, as: UInt32.self)
        p.storeBytes(of: e.kind.rawValue, toByteOffset: 4, as: UInt8.self)
        p.storeBytes(of: e.flags, toByteOffset: 5, as: UInt8.self)
        p.storeBytes(of: e.source.littleEndian, toByteOffset: 6, as: UInt16.self)
        p.storeBytes(of: e.eventTime.rawValue.littleEndian, toByteOffset: 8, as: Int64.self)
        p.storeBytes(of: e.knownTime.rawValue.littleEndian, toByteOffset: 16, as: Int64.self)
        p.storeBytes(of: e.seq.littleEndian, toByteOffset: 24, as: UInt64.self)
        p.storeBytes(of: e.a.littleEndian, toByteOffset: 32, as: Int64.self)
        p.storeBytes(of: e.b.littleEndian, toByteOffset: 40, as: Int64.self)
        p.storeBytes(of: e.c.littleEndian, toByteOffset: 48, as: Int64.self)
        p.storeBytes(of: e.d.littleEndian, toByteOffset: 56, as: Int64.self)
    }

    @inline(__always)
    static func decodeEvent(_ p: UnsafeRawBufferPointer, at o: Int) -> Event? {
        guard let kind = EventKind(rawValue: p.load(fromByteOffset: o + 4, as: UInt8.self)) else { return nil }
        func i64(_ k: Int) -> Int64 { Int64(littleEndian: p.loadUnaligned(fromByteOffset: o + k, as: Int64.self)) }
        return Event(subjectID: UInt32(littleEndian: p.loadUnaligned(fromByteOffset: o, as: UInt32.self)), kind: kind,
                     flags: p.load(fromByteOffset: o + 5, as: UInt8.self),
                     source: UInt16(littleEndian: p.loadUnaligned(fromByteOffset: o + 6, as: UInt16.self)),
                     eventTime: Nanos(i64(8)), knownTime: Nanos(i64(16)), seq: UInt64(bitPattern: i64(24)),
                     a: i64(32), b: i64(40), c: i64(48), d: i64(56))
    }
}

/// An open partition's append log being written: events are staged in a block buffer and written (one
/// `writev`) when the block fills or on `flush`. Owned by one `StoreWriter`; not thread-safe.
final class OpenPartition {
    let key: PartitionKey
    let directory: String
    let generation: UInt64
    let file: OwnedFile
    let blockEvents: Int
    // Per-event state, used by the one writer thread: not checked for exclusivity at run time.
    /// Global `SubjectID` -> log-local id + 1 (0: not yet defined in this log).
    @exclusivity(unchecked) var localOf: [UInt32] = []
    var localCount: UInt32 = 0
    var pendingDefinitions: [UInt8] = []
    let buffer: UnsafeMutableRawPointer
    @exclusivity(unchecked) var staged = 0
    var unsynced = false
    /// Bytes of the whole blocks in the log: where the next block goes.
    private(set) var logEnd = 0
    /// A failed write left bytes after `logEnd` that are not cut yet: no block is written until they are.
    private var needsCut = false
    /// Bytes of a torn tail cut when this log was recovered.
    private(set) var tornBytesCut = 0

    /// Opens (or continues) the partition's live log. A log left by an earlier run is recovered first: its torn
    /// tail is cut and its subjects are re-read so new events keep using their ids.
    init(key: PartitionKey, directory: String, subjects: SubjectTable, blockEvents: Int) throws(StoreError) {
        self.key = key
        self.directory = directory
        self.blockEvents = blockEvents
        try FS.makeDirectories(directory)
        let files = try Layout.cleanUp(directory)
        let existing = files.liveLogs.last
        generation = existing ?? files.nextGeneration
        let path = directory + "/" + Layout.logName(generation)
        file = try OwnedFile(path: path, flags: O_WRONLY | O_CREAT)
        buffer = .allocate(byteCount: blockEvents * AppendLog.eventSize, alignment: 64)
        if existing != nil {
            let contents = try AppendLog.read(path: path)
            if contents.tornBytes > 0 {
                try file.truncate(to: contents.validBytes)
                try file.syncData()
                tornBytesCut = contents.tornBytes
            }
            for text in contents.subjects {
                let global = subjects.intern(text: text)
                setLocal(global, localCount + 1)
                localCount += 1
            }
        } else {
            try FS.syncDirectory(directory)
        }
        logEnd = try file.size()
        try file.seek(to: logEnd)
    }

    deinit { buffer.deallocate() }

    private func setLocal(_ global: SubjectID, _ value: UInt32) {
        if Int(global) >= localOf.count { localOf.append(contentsOf: repeatElement(0, count: Int(global) + 1 - localOf.count)) }
        localOf[Int(global)] = value
    }

    /// Stages one event. - Returns: whether the block is now full (the caller writes it with `writeBlock`).
    @inline(__always)
    func stage(_ e: Event, subjects: SubjectTable) -> Bool {
        var local: UInt32
        if Int(e.subjectID) < localOf.count, localOf[Int(e.subjectID)] != 0 {
            local = localOf[Int(e.subjectID)] - 1
        } else {
            local = define(e.subjectID, subjects: subjects)
        }
        AppendLog.encodeEvent(e, subject: local, at: buffer + staged &* AppendLog.eventSize)
        staged &+= 1
        return staged == blockEvents
    }

    private func define(_ global: SubjectID, subjects: SubjectTable) -> UInt32 {
        let text = subjects.entry(global)
        let local = localCount
        localCount += 1
        setLocal(global, local + 1)
        withUnsafeBytes(of: local.littleEndian) { pendingDefinitions.append(contentsOf: $0) }
        withUnsafeBytes(of: UInt16(text.count).littleEndian) { pendingDefinitions.append(contentsOf: $0) }
        pendingDefinitions.append(contentsOf: text)
        return local
    }

    /// Writes the staged events as one block (nothing when none are staged) at `logEnd`.
    ///
    /// A write that fails (a full disk) may have put part of the block in the file: it is cut back to `logEnd`
    /// (`ftruncate`) before anything else is written, so a later block never lands behind a partial one. The
    /// staged events and definitions are left as they were; the caller drops the events (`dropStaged`).
    /// - Throws: `StoreError.io` from the cut or the write.
    func writeBlock() throws(StoreError) {
        guard staged > 0 || !pendingDefinitions.isEmpty else { return }
        if needsCut { try cutBack() }
        let events = UnsafeRawBufferPointer(start: buffer, count: staged * AppendLog.eventSize)
        let padding = (8 - pendingDefinitions.count % 8) % 8
        let r: Result<Void, StoreError> = pendingDefinitions.withUnsafeBytes { d in
            let header = AppendLog.blockHeader(definitions: d, events: events, count: staged)
            return header.withUnsafeBytes { h in
                AppendLog.zeroPadding.withUnsafeBytes { z in
                    do {
                        try file.writeAll([h, d, UnsafeRawBufferPointer(rebasing: z[0..<padding]), events])
                        return .success(())
                    } catch { return .failure(error as! StoreError) }
                }
            }
        }
        if case .failure(let error) = r {
            needsCut = true
            // If the cut fails too, `needsCut` stays set and the next write tries it first; the write's error is
            // the one to report.
            try? cutBack()
            throw error
        }
        logEnd += AppendLog.headerSize + pendingDefinitions.count + padding + events.count
        staged = 0
        pendingDefinitions.removeAll(keepingCapacity: true)
        unsynced = true
    }

    /// Cuts the log back to its last whole block and moves the write position there.
    private func cutBack() throws(StoreError) {
        try file.truncate(to: logEnd)
        try file.seek(to: logEnd)
        needsCut = false
    }

    /// Drops the staged events (a block that could not be written), calling `body` with each one's ring
    /// sequence and event time. Subject definitions stay pending: the log-local ids already handed out stay
    /// valid, and the next block written defines them.
    func dropStaged(_ body: (_ seq: UInt64, _ eventTime: Int64) -> Void) {
        for i in 0..<staged {
            let p = UnsafeRawPointer(buffer + i &* AppendLog.eventSize)
            body(UInt64(littleEndian: p.loadUnaligned(fromByteOffset: 24, as: UInt64.self)),
                 Int64(littleEndian: p.loadUnaligned(fromByteOffset: 8, as: Int64.self)))
        }
        staged = 0
    }

    /// Forces the blocks written to the device (the corresponding C function is `fdatasync`).
    func sync() throws(StoreError) {
        if unsynced { try file.syncData(); unsynced = false }
    }
}
