import CTickwireSys
import Crypto
import TickwireCore

/// CRC32C (Castagnoli), continuing from `crc` (0 to start). SSE4.2 when the CPU has it, slicing-by-8 otherwise.
@inlinable
public func crc32c(_ bytes: UnsafeRawBufferPointer, continuing crc: UInt32 = 0) -> UInt32 {
    tw_crc32c(crc, bytes.baseAddress, bytes.count)
}

/// The SHA-256 of a record, which the next record stores as its `prevHash`: the links of the hash chain.
public struct RecordHash: Hashable, Sendable, CustomStringConvertible {
    public var w0: UInt64, w1: UInt64, w2: UInt64, w3: UInt64

    public static let zero = RecordHash(w0: 0, w1: 0, w2: 0, w3: 0)

    public init(w0: UInt64, w1: UInt64, w2: UInt64, w3: UInt64) { self.w0 = w0; self.w1 = w1; self.w2 = w2; self.w3 = w3 }

    /// Reads 32 bytes at `offset`.
    init(loading from: UnsafeRawBufferPointer, at offset: Int) {
        w0 = from.loadUnaligned(fromByteOffset: offset, as: UInt64.self)
        w1 = from.loadUnaligned(fromByteOffset: offset + 8, as: UInt64.self)
        w2 = from.loadUnaligned(fromByteOffset: offset + 16, as: UInt64.self)
        w3 = from.loadUnaligned(fromByteOffset: offset + 24, as: UInt64.self)
    }

    /// The SHA-256 of `bytes` (swift-crypto; BoringSSL uses the x86 SHA extensions where the CPU has them).
    public init(sha256 bytes: UnsafeRawBufferPointer) {
        var h = SHA256()
        h.update(bufferPointer: bytes)
        let digest = h.finalize()
        var v = RecordHash.zero
        digest.withUnsafeBytes { d in v = RecordHash(loading: d, at: 0) }
        self = v
    }

    func store(to: UnsafeMutableRawBufferPointer, at offset: Int) {
        to.storeBytes(of: w0, toByteOffset: offset, as: UInt64.self)
        to.storeBytes(of: w1, toByteOffset: offset + 8, as: UInt64.self)
        to.storeBytes(of: w2, toByteOffset: offset + 16, as: UInt64.self)
        to.storeBytes(of: w3, toByteOffset: offset + 24, as: UInt64.self)
    }

    /// Lower-case hex of the 32 bytes, in file order.
    public var hex: String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(64)
        for w in [w0, w1, w2, w3] {
            for i in 0..<8 {
                let b = UInt8(truncatingIfNeeded: w >> (8 * UInt64(i)))
                out.append(digits[Int(b >> 4)]); out.append(digits[Int(b & 15)])
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    public var description: String { hex }
}

/// Byte layouts of segment files and records (docs/STORAGE.md, "Journal"). All integers little-endian.
///
/// Record (64-byte header, then the payload):
/// ```
///  0 u32 payload length      4 u32 CRC32C of bytes [0,4) ++ [8, 64+length)
///  8 u64 sequence           16 i64 event time (ns)     24 i64 known time (ns, when appended)
/// 32 [32] SHA-256 of the previous record (all its bytes); zeros before the first record
/// 64 payload
/// ```
/// Segment header (64 bytes): magic `TWJSEG01`, u16 version 1, u16 header size 64, u32 CRC32C of bytes
/// [0,12) ++ [16,64), u64 first sequence, i64 creation time, [32] hash of the record before the segment.
public enum JournalFormat {
    public static let recordHeaderSize = 64
    public static let segmentHeaderSize = 64
    public static let version: UInt16 = 1
    /// `TWJSEG01` read as a little-endian u64.
    public static let segmentMagic = magic("TWJSEG01")
    /// An eight-character file magic as the little-endian u64 it is stored as (every journal file starts with one).
    static func magic(_ text: StaticString) -> UInt64 {
        precondition(text.utf8CodeUnitCount == 8)
        var v: UInt64 = 0
        for i in 0..<8 { v |= UInt64(text.utf8Start[i]) << (8 * UInt64(i)) }
        return v
    }
    /// Payloads above this are refused (a trade is ~100 bytes; a corrupt length must not allocate gigabytes).
    public static let maxPayload = 1 << 20
    /// The unit a disk writes atomically, at the least: a never-written hole is a whole run of these.
    static let sectorSize = 512

    /// The file name of the segment whose first record is `firstSeq`: `seg-00000000000000000001.twj`.
    public static func segmentName(firstSeq: UInt64) -> String {
        let digits = String(firstSeq)
        return "seg-" + String(repeating: "0", count: max(0, 20 - digits.count)) + digits + ".twj"
    }

    /// The first sequence named by a segment file name, or nil when the name is not a segment's.
    public static func firstSeq(segmentName name: String) -> UInt64? {
        guard name.hasPrefix("seg-"), name.hasSuffix(".twj"), name.utf8.count == 28 else { return nil }
        return UInt64(name.dropFirst(4).dropLast(4))
    }

    /// The CRC a record header at `offset` should carry (covers the length, then everything after the CRC).
    static func recordCRC(_ buf: UnsafeRawBufferPointer, at offset: Int, payloadLength: Int) -> UInt32 {
        let c = crc32c(UnsafeRawBufferPointer(rebasing: buf[offset..<offset + 4]))
        return crc32c(UnsafeRawBufferPointer(rebasing: buf[offset + 8..<offset + recordHeaderSize + payloadLength]), continuing: c)
    }

    /// Fills a record header in place (the payload must already follow it) and returns the record's hash.
    static func sealRecord(_ buf: UnsafeMutableRawBufferPointer, at offset: Int, payloadLength: Int, seq: UInt64,
                           eventTime: Nanos, knownTime: Nanos, prevHash: RecordHash) -> RecordHash {
        buf.storeBytes(of: UInt32(payloadLength).littleEndian, toByteOffset: offset, as: UInt32.self)
        buf.storeBytes(of: seq.littleEndian, toByteOffset: offset + 8, as: UInt64.self)
        buf.storeBytes(of: eventTime.rawValue.littleEndian, toByteOffset: offset + 16, as: Int64.self)
        buf.storeBytes(of: knownTime.rawValue.littleEndian, toByteOffset: offset + 24, as: Int64.self)
        prevHash.store(to: buf, at: offset + 32)
        let ro = UnsafeRawBufferPointer(buf)
        let crc = recordCRC(ro, at: offset, payloadLength: payloadLength)
        buf.storeBytes(of: crc.littleEndian, toByteOffset: offset + 4, as: UInt32.self)
        return RecordHash(sha256: UnsafeRawBufferPointer(rebasing: ro[offset..<offset + recordHeaderSize + payloadLength]))
    }

    /// A segment header's 64 bytes.
    static func segmentHeader(firstSeq: UInt64, created: Nanos, prevHash: RecordHash) -> [UInt8] {
        var h = [UInt8](repeating: 0, count: segmentHeaderSize)
        h.withUnsafeMutableBytes { b in
            b.storeBytes(of: segmentMagic.littleEndian, toByteOffset: 0, as: UInt64.self)
            b.storeBytes(of: version.littleEndian, toByteOffset: 8, as: UInt16.self)
            b.storeBytes(of: UInt16(segmentHeaderSize).littleEndian, toByteOffset: 10, as: UInt16.self)
            b.storeBytes(of: firstSeq.littleEndian, toByteOffset: 16, as: UInt64.self)
            b.storeBytes(of: created.rawValue.littleEndian, toByteOffset: 24, as: Int64.self)
            prevHash.store(to: b, at: 32)
            let crc = segmentHeaderCRC(UnsafeRawBufferPointer(b))
            b.storeBytes(of: crc.littleEndian, toByteOffset: 12, as: UInt32.self)
        }
        return h
    }

    static func segmentHeaderCRC(_ b: UnsafeRawBufferPointer) -> UInt32 {
        crc32c(UnsafeRawBufferPointer(rebasing: b[16..<64]), continuing: crc32c(UnsafeRawBufferPointer(rebasing: b[0..<12])))
    }
}

/// One journaled record as read back.
public struct JournalRecord: Sendable, Equatable {
    public var seq: UInt64
    public var eventTime: Nanos
    public var knownTime: Nanos
    /// The hash of the record before it (the chain link it carries).
    public var prevHash: RecordHash
    /// The SHA-256 of this record's bytes (what the next record's `prevHash` must equal).
    public var hash: RecordHash
    public var payload: [UInt8]
    /// Where the record starts: the segment file name and the byte offset in it.
    public var segment: String
    public var offset: Int64
}
