import Crypto
import TickwireCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A partition's corrections: `DATE/ROOT/corrections.twc`, an append-only, hash-chained log (docs/STORAGE.md,
/// "Corrections"). Sealed segments are never rewritten; readers apply these records over them.
///
/// File: a 16-byte header (magic `TWCORR01`, u32 version 1, u32 CRC-32C of bytes [0, 12)), then records back
/// to back. A record: a 64-byte header — u32 payload length L, u32 CRC-32C of bytes [0, 4), [8, 56) and the
/// payload, u64 number (1, 2, …), i64 known time, 32-byte SHA-256 of the whole previous record (zeros before the
/// first), u32 CRC-32C of bytes [0, 56), u32 0 — then the payload. The header's own CRC tells an append cut short
/// (a whole header whose payload the file ends inside) from a changed length.
enum CorrectionLog {
    static let fileName = "corrections.twc"
    static let magic: [UInt8] = Array("TWCORR01".utf8)
    static let version: UInt32 = 1
    static let headerSize = 16
    static let recordHeaderSize = 64
    static let maxPayload = 1 << 16

    /// What reading a log found: every record up to the first damage, and the damage.
    struct Contents {
        var records: [CorrectionRecord] = []
        /// Bytes that are no valid record (a bad CRC, a broken chain link, a wrong number, a payload that does not
        /// decode). A file that merely ends inside its last record is a torn append, never reported: that
        /// correction was not made (`tickwire correct` reports success only after `fdatasync`).
        var damage: StoreDamage?
        /// Where the last whole record ends: the next append goes here.
        var validBytes = 0
        var headHash: ChainHash { records.last?.hash ?? .zero }
    }

    static func path(store: String, partition: PartitionKey) -> String {
        store + "/" + partition.relativePath + "/" + fileName
    }

    static func exists(_ path: String) -> Bool { access(path, F_OK) == 0 }

    static func read(path: String) throws(StoreError) -> Contents {
        let file = try MappedFile(path: path)
        return decode(file.bytes, path: path)
    }

    static func decode(_ b: UnsafeRawBufferPointer, path: String) -> Contents {
        var out = Contents()
        func damage(_ offset: Int, _ why: String) -> Contents {
            out.damage = StoreDamage(path: path, offset: offset, bytes: b.count - offset, reason: why, unattributedEvents: 0)
            return out
        }
        if b.count < headerSize { return out }     // created, header not yet whole: nothing was corrected
        guard b.count >= headerSize, Array(b[0..<8]) == magic else { return damage(0, "no corrections-log magic") }
        guard b.le(UInt32.self, 12) == CRC32C.of(UnsafeRawBufferPointer(rebasing: b[0..<12])) else {
            return damage(0, "header checksum mismatch")
        }
        guard b.le(UInt32.self, 8) == version else { return damage(8, "unsupported version \(b.le(UInt32.self, 8))") }
        var o = headerSize
        var prev = ChainHash.zero
        out.validBytes = o
        while o < b.count {
            guard b.count - o >= recordHeaderSize else { return out }
            guard CRC32C.of(UnsafeRawBufferPointer(rebasing: b[o..<o + 56])) == b.le(UInt32.self, o + 56) else {
                return damage(o, "record header checksum mismatch")
            }
            guard b.le(UInt32.self, o + 60) == 0 else { return damage(o + 60, "reserved record header bytes are not zero") }
            let len = Int(b.le(UInt32.self, o))
            guard len <= maxPayload else { return damage(o, "record payload length \(len) is over \(maxPayload)") }
            guard b.count - o - recordHeaderSize >= len else { return out }
            let whole = UnsafeRawBufferPointer(rebasing: b[o..<o + recordHeaderSize + len])
            guard recordCRC(whole) == whole.le(UInt32.self, 4) else { return damage(o, "record checksum mismatch") }
            let number = whole.le(UInt64.self, 8)
            guard number == UInt64(out.records.count + 1) else {
                return damage(o, "record number \(number) where \(out.records.count + 1) was expected")
            }
            guard Array(whole[24..<56]) == prev.bytes else {
                return damage(o, "record \(number) does not link to the SHA-256 of record \(number - 1): the chain is broken")
            }
            let hash = sha256(whole)
            guard var record = CorrectionPayload.decode(UnsafeRawBufferPointer(rebasing: whole[recordHeaderSize...])) else {
                return damage(o, "record \(number)'s payload does not decode")
            }
            record.number = number
            record.knownTime = Nanos(whole.le(Int64.self, 16))
            record.prevHash = prev
            record.hash = hash
            if let last = out.records.last, last.knownTime >= record.knownTime {
                return damage(o, "record \(number)'s known time does not come after record \(number - 1)'s")
            }
            out.records.append(record)
            prev = hash
            o += whole.count
            out.validBytes = o
        }
        return out
    }

    /// CRC-32C of a record's length, number, known time, link and payload.
    static func recordCRC(_ r: UnsafeRawBufferPointer) -> UInt32 {
        var c = CRC32C.of(UnsafeRawBufferPointer(rebasing: r[0..<4]))
        c = CRC32C.of(UnsafeRawBufferPointer(rebasing: r[8..<56]), continuing: c)
        return CRC32C.of(UnsafeRawBufferPointer(rebasing: r[recordHeaderSize...]), continuing: c)
    }

    static func sha256(_ bytes: UnsafeRawBufferPointer) -> ChainHash {
        var h = SHA256()
        h.update(bufferPointer: bytes)
        return ChainHash(bytes: Array(h.finalize()))
    }

    /// Appends records durably, under an exclusive `flock` on the log: the next numbers and links are taken from
    /// the file as it is under the lock, the records from `make(existing, lastKnown)` (known times increasing), and
    /// nothing counts as written before `fdatasync` returns. A torn append at the end is cut first; a damaged
    /// log is refused (a correction must never be chained onto bytes that are not what was written).
    /// - Returns: the records as written.
    static func append(path: String, directory: String,
                       _ make: (_ existing: Contents, _ lastKnown: Int64) throws -> [(Nanos, EventIdentity, CorrectionChange, String, String)])
        throws -> [CorrectionRecord] {
        try FS.makeDirectories(directory)
        let isNew = !exists(path)
        let file = try OwnedFile(path: path, flags: O_RDWR | O_CREAT)
        guard flock(file.fd, LOCK_EX) == 0 else { throw StoreError.io(operation: "flock", path: path, errno: errno) }
        defer { _ = flock(file.fd, LOCK_UN) }
        var existing: Contents
        do {
            let m = try MappedFile(path: path)
            existing = decode(m.bytes, path: path)
        }
        if let d = existing.damage {
            throw StoreError.corrupt(path: path, offset: d.offset, reason: d.reason + "; no correction is appended to a damaged log")
        }
        let size = try file.size()
        var bytes = [UInt8]()
        if existing.validBytes < headerSize {
            try file.truncate(to: 0)
            bytes += magic
            bytes.appendLE(version)
            bytes.appendLE(CRC32C.of(bytes))
            existing.validBytes = 0
        } else if size > existing.validBytes {
            try file.truncate(to: existing.validBytes)
        }
        let wanted = try make(existing, existing.records.last?.knownTime.rawValue ?? .min)
        guard !wanted.isEmpty else { return [] }
        var prev = existing.headHash
        var last = existing.records.last?.knownTime.rawValue ?? .min
        var written = [CorrectionRecord]()
        for (k, target, change, author, reason) in wanted {
            precondition(k.rawValue > last, "correction known times must increase")
            last = k.rawValue
            let payload = CorrectionPayload.encode(target: target, change: change, author: author, reason: reason)
            var r = [UInt8]()
            r.appendLE(UInt32(payload.count)); r.appendLE(UInt32(0))
            r.appendLE(UInt64(existing.records.count + written.count + 1)); r.appendLE(k.rawValue)
            r += prev.bytes
            r.appendLE(UInt32(0)); r.appendLE(UInt32(0))
            r += payload
            let crc = r.withUnsafeBytes { recordCRC($0) }
            withUnsafeBytes(of: crc.littleEndian) { for i in 0..<4 { r[4 + i] = $0[i] } }
            let headerCRC = r.withUnsafeBytes { CRC32C.of(UnsafeRawBufferPointer(rebasing: $0[0..<56])) }
            withUnsafeBytes(of: headerCRC.littleEndian) { for i in 0..<4 { r[56 + i] = $0[i] } }
            let hash = r.withUnsafeBytes { sha256($0) }
            written.append(CorrectionRecord(number: UInt64(existing.records.count + written.count + 1), knownTime: k,
                                            target: target, change: change, author: author, reason: reason,
                                            prevHash: prev, hash: hash))
            prev = hash
            bytes += r
        }
        try file.seek(to: existing.validBytes)
        try file.writeAll(bytes)
        try file.syncData()
        if isNew {
            // The log's entry, and the partition's and date's directories when this made them.
            var dir = directory
            for _ in 0..<3 {
                try FS.syncDirectory(dir)
                guard let slash = dir.lastIndex(of: "/") else { break }
                dir = String(dir[..<slash])
            }
        }
        return written
    }
}

/// A record's payload: u8 version 1, u8 change (1 replace, 2 delete, 3 insert), u16 0; the target: u16 subject
/// length and its UTF-8, i64 event time, i64 known time, u32 ordinal; for replace and insert the values: u8 kind,
/// u8 flags, u16 source, i64 a, b, c, d; then u8 author length and the author, u16 reason length and the reason.
enum CorrectionPayload {
    static func encode(target: EventIdentity, change: CorrectionChange, author: String, reason: String) -> [UInt8] {
        var out = [UInt8]()
        out.append(1)
        let values: EventValues?
        switch change {
        case .replace(let v): out.append(1); values = v
        case .delete: out.append(2); values = nil
        case .insert(let v): out.append(3); values = v
        }
        out.appendLE(UInt16(0))
        out.appendLE(UInt16(target.subject.utf8.count)); out += target.subject.utf8
        out.appendLE(target.eventTime.rawValue); out.appendLE(target.knownTime.rawValue); out.appendLE(target.ordinal)
        if let v = values {
            out.append(v.kind.rawValue); out.append(v.flags); out.appendLE(v.source)
            out.appendLE(v.a); out.appendLE(v.b); out.appendLE(v.c); out.appendLE(v.d)
        }
        let a = Array(author.utf8.prefix(255)), r = Array(reason.utf8.prefix(4096))
        out.append(UInt8(a.count)); out += a
        out.appendLE(UInt16(r.count)); out += r
        return out
    }

    static func decode(_ p: UnsafeRawBufferPointer) -> CorrectionRecord? {
        var o = 0
        func need(_ n: Int) -> Bool { p.count - o >= n }
        guard need(4), p[0] == 1, (1...3).contains(p[1]) else { return nil }
        let op = p[1]
        o = 4
        guard need(2) else { return nil }
        let sl = Int(p.le(UInt16.self, o)); o += 2
        guard need(sl + 20) else { return nil }
        let subject = String(decoding: UnsafeRawBufferPointer(rebasing: p[o..<o + sl]), as: UTF8.self); o += sl
        let target = EventIdentity(subject: subject, eventTime: Nanos(p.le(Int64.self, o)), knownTime: Nanos(p.le(Int64.self, o + 8)),
                                   ordinal: p.le(UInt32.self, o + 16))
        o += 20
        var values: EventValues?
        if op != 2 {
            guard need(36), let kind = EventKind(rawValue: p[o]) else { return nil }
            values = EventValues(kind: kind, flags: p[o + 1], source: p.le(UInt16.self, o + 2), a: p.le(Int64.self, o + 4),
                                 b: p.le(Int64.self, o + 12), c: p.le(Int64.self, o + 20), d: p.le(Int64.self, o + 28))
            o += 36
        }
        guard need(1) else { return nil }
        let al = Int(p[o]); o += 1
        guard need(al + 2) else { return nil }
        let author = String(decoding: UnsafeRawBufferPointer(rebasing: p[o..<o + al]), as: UTF8.self); o += al
        let rl = Int(p.le(UInt16.self, o)); o += 2
        guard p.count - o == rl else { return nil }
        let reason = String(decoding: UnsafeRawBufferPointer(rebasing: p[o..<o + rl]), as: UTF8.self)
        let change: CorrectionChange = op == 1 ? .replace(values!) : op == 2 ? .delete : .insert(values!)
        return CorrectionRecord(number: 0, knownTime: Nanos(0), target: target, change: change, author: author, reason: reason,
                                prevHash: .zero, hash: .zero)
    }
}
