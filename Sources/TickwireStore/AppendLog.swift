import TickwireCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The append log of an open partition (docs/STORAGE.md, "Append log"): a sequence of blocks, each with a
/// CRC-32C over its header and payload, so a torn or partly written tail is found and cut on recovery, and the
/// next intact block after damage is found by its magic and checksum.
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

    /// What a log holds: its intact blocks, and where it is damaged.
    struct Contents {
        /// Subject texts by log-local id; "" (never a subject) for an id whose definition was in damaged bytes.
        var subjects: [String] = []
        /// Events of the intact blocks in arrival order; `subjectID` indexes `subjects`.
        var events: [Event] = []
        var blocks = 0
        /// The end of the last intact block; anything after is a torn tail.
        var validBytes = 0
        /// A torn tail: bytes at `validBytes` that are no valid block, with no valid block after them.
        var tornBytes = 0
        var tornReason: String?
        /// Damage with intact blocks after it, in file order.
        var damage: [StoreDamage] = []
    }

    /// Reads a log file. - Throws: `StoreError.io` when it cannot be opened or read.
    /// - Parameter keepEvents: false checks every block and keeps only what recovery needs (subjects, ends,
    ///   damage), not the decoded events.
    ///
    /// Read with `pread`, not mapped: a sector the disk cannot read is then an error naming the file (EIO), where
    /// through a mapping it was SIGBUS and the end of the daemon; and a log cut back meanwhile cannot fault. The
    /// bytes are held while they are read: a log the daemon writes is at most one chunk (`StoreWriter.chunkEvents`,
    /// 2^18 events, ~17 MB).
    /// - Parameter want: as for `read(_:keepEvents:want:)`.
    static func read(path: String, keepEvents: Bool = true, want: ((String) -> Bool)? = nil) throws(StoreError) -> Contents {
        let bytes = try OwnedFile(path: path, flags: O_RDONLY).readAll()
        var out = bytes.withUnsafeBytes { read($0, keepEvents: keepEvents, want: want) }
        for i in out.damage.indices { out.damage[i].path = path }
        return out
    }

    /// Reads every intact block of a log. At a block that is not valid, it looks for the next valid block
    /// (its magic, then every check below, the checksum over the whole block included): when there is one, the
    /// bytes between are `damage` and reading goes on there; when there is none, they are the torn tail.
    /// - Parameter want: when given, only events of the subjects it accepts are kept (every block is still
    ///   checked whole): how a read of a few subjects takes them from a log without decoding the rest.
    static func read(_ p: UnsafeRawBufferPointer, keepEvents: Bool = true, want: ((String) -> Bool)? = nil) -> Contents {
        var out = Contents()
        var wanted = [Bool]()
        var offset = 0
        while offset < p.count {
            var parsed = block(p, at: offset, subjectCount: out.subjects.count, afterDamage: !out.damage.isEmpty)
            if case .bad(let why) = parsed {
                guard let next = nextBlock(p, after: offset, subjectCount: out.subjects.count) else {
                    out.tornBytes = p.count - offset
                    out.tornReason = why
                    break
                }
                out.damage.append(StoreDamage(path: "", offset: offset, bytes: next.start - offset, reason: why, unattributedEvents: 0))
                offset = next.start
                parsed = .block(next.block)
            }
            guard case .block(let b) = parsed else { break }
            for (id, text) in b.definitions {
                if id > out.subjects.count { out.subjects.append(contentsOf: repeatElement("", count: id - out.subjects.count)) }
                out.subjects.append(text)
            }
            if let want { while wanted.count < out.subjects.count { wanted.append(want(out.subjects[wanted.count])) } }
            if keepEvents && want == nil { out.events.reserveCapacity(out.events.count + b.count) }
            for i in 0..<b.count {
                let at = b.eventsStart + i * eventSize
                let subject = Int(UInt32(littleEndian: p.loadUnaligned(fromByteOffset: at, as: UInt32.self)))
                // Only after damage: a subject whose definition was in the damaged bytes.
                if subject >= out.subjects.count || out.subjects[subject].isEmpty {
                    out.damage[out.damage.count - 1].unattributedEvents += 1
                } else if keepEvents && (want == nil || wanted[subject]) {
                    out.events.append(decodeEvent(p, at: at)!)
                }
            }
            out.blocks += 1
            offset = b.end
            out.validBytes = offset
        }
        return out
    }

    /// One valid block: the subjects it defines (log-local id and text), its events, and where it ends.
    struct Block {
        var definitions: [(id: Int, text: String)] = []
        /// Where its events start in the bytes, and how many (each checked: a known kind and a defined subject).
        var eventsStart = 0
        var count = 0
        var end = 0
    }

    enum Parsed {
        case block(Block)
        /// Not a valid block, and why.
        case bad(String)
    }

    /// Checks and decodes the block at `offset`. Before any damage a block must define exactly the next ids and
    /// name only defined subjects; after damage, definitions may skip ids (theirs were in the damaged bytes) and
    /// events may name them (the caller counts those as unattributed).
    static func block(_ p: UnsafeRawBufferPointer, at offset: Int, subjectCount: Int, afterDamage: Bool) -> Parsed {
        guard p.count - offset >= headerSize else { return .bad("a partial block header") }
        func u32(_ o: Int) -> UInt32 { UInt32(littleEndian: p.loadUnaligned(fromByteOffset: offset + o, as: UInt32.self)) }
        guard u32(0) == magic else { return .bad("no block magic") }
        guard UInt16(littleEndian: p.loadUnaligned(fromByteOffset: offset + 4, as: UInt16.self)) == version else {
            return .bad("an unknown block version")
        }
        // Writers leave the reserved fields zero: a cheap check before the checksum when resynchronising.
        guard p.loadUnaligned(fromByteOffset: offset + 6, as: UInt16.self) == 0, u32(16) == 0 else {
            return .bad("reserved header bytes not zero")
        }
        let defBytes = Int(u32(8)), count = Int(u32(12))
        guard defBytes <= 1 << 24, count <= 1 << 24 else { return .bad("a block longer than the file") }
        let payload = (defBytes + 7) & ~7 + count * eventSize
        guard p.count - offset - headerSize >= payload else { return .bad("a block longer than the file") }
        var crc = CRC32C.of(UnsafeRawBufferPointer(rebasing: p[offset..<offset + 20]))
        crc = CRC32C.of(UnsafeRawBufferPointer(rebasing: p[offset + headerSize..<offset + headerSize + payload]), continuing: crc)
        guard crc == u32(20) else { return .bad("a block checksum mismatch") }
        var b = Block()
        var next = subjectCount
        var d = offset + headerSize
        let defEnd = d + defBytes
        while d < defEnd {
            guard defEnd - d >= 6 else { return .bad("a bad subject definition") }
            let id = Int(UInt32(littleEndian: p.loadUnaligned(fromByteOffset: d, as: UInt32.self)))
            let len = Int(UInt16(littleEndian: p.loadUnaligned(fromByteOffset: d + 4, as: UInt16.self)))
            let inOrder = id == next || (afterDamage && b.definitions.isEmpty && id > next)
            guard inOrder, defEnd - d - 6 >= len else { return .bad("a bad subject definition") }
            let text = String(decoding: UnsafeRawBufferPointer(rebasing: p[d + 6..<d + 6 + len]), as: UTF8.self)
            guard (try? Subject(text)) != nil else { return .bad("a bad subject definition") }
            b.definitions.append((id, text))
            next = id + 1
            d += 6 + len
        }
        var e = offset + headerSize + (defBytes + 7) & ~7
        b.eventsStart = e
        b.count = count
        for _ in 0..<count {
            guard EventKind(rawValue: p.load(fromByteOffset: e + 4, as: UInt8.self)) != nil,
                  afterDamage || Int(UInt32(littleEndian: p.loadUnaligned(fromByteOffset: e, as: UInt32.self))) < next else {
                return .bad("an event with an unknown kind or subject")
            }
            e += eventSize
        }
        b.end = offset + headerSize + payload
        return .block(b)
    }

    /// The first valid block that starts after `offset`, found by its magic at any byte (a partial block from
    /// an older writer can leave the next block at any offset).
    /// - Complexity: O(bytes after `offset`), plus a checksum of each candidate with the block magic.
    static func nextBlock(_ p: UnsafeRawBufferPointer, after offset: Int, subjectCount: Int) -> (start: Int, block: Block)? {
        var o = offset + 1
        while o <= p.count - headerSize {
            if UInt32(littleEndian: p.loadUnaligned(fromByteOffset: o, as: UInt32.self)) == magic,
               case .block(let b) = block(p, at: o, subjectCount: subjectCount, afterDamage: true) {
                return (o, b)
            }
            o += 1
        }
        return nil
    }

    /// Encodes events as a log of blocks of at most `blockEvents`, each subject defined in the block of its
    /// first use: how a damaged log's intact events are written back.
    /// - Parameters:
    ///   - subjects: texts by the events' `subjectID`.
    /// - Returns: the log's bytes, and its subjects by log-local id.
    static func encode(_ events: [Event], subjects: [String], blockEvents: Int) -> (bytes: [UInt8], subjects: [String]) {
        var bytes = [UInt8](), local = [Int](repeating: -1, count: subjects.count), logSubjects = [String]()
        var start = 0
        while start < events.count {
            let end = min(start + blockEvents, events.count)
            var definitions = [UInt8]()
            var body = [UInt8](repeating: 0, count: (end - start) * eventSize)
            for i in start..<end {
                let s = Int(events[i].subjectID)
                if local[s] < 0 {
                    local[s] = logSubjects.count
                    appendDefinition(UInt32(local[s]), Array(subjects[s].utf8), to: &definitions)
                    logSubjects.append(subjects[s])
                }
                body.withUnsafeMutableBytes { encodeEvent(events[i], subject: UInt32(local[s]), at: $0.baseAddress! + (i - start) * eventSize) }
            }
            let header = definitions.withUnsafeBytes { d in
                body.withUnsafeBytes { blockHeader(definitions: d, events: $0, count: end - start) }
            }
            bytes += header + definitions + zeroPadding[0..<(8 - definitions.count % 8) % 8] + body
            start = end
        }
        return (bytes, logSubjects)
    }

    /// Appends one subject definition: u32 log-local id, u16 length, the UTF-8 text.
    static func appendDefinition<Text: Collection<UInt8>>(_ id: UInt32, _ text: Text, to out: inout [UInt8]) {
        withUnsafeBytes(of: id.littleEndian) { out.append(contentsOf: $0) }
        withUnsafeBytes(of: UInt16(text.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(contentsOf: text)
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
