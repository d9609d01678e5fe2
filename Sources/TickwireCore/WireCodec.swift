/// Why a payload could not be decoded; each case says what was expected.
public enum WireError: Error, Equatable, CustomStringConvertible, Sendable {
    case short(length: Int, needed: Int)
    case unsupportedVersion(UInt8)
    case unknownKind(UInt8)
    case bodyTooShort(kind: EventKind, length: Int, needed: Int)
    case frames(count: Int)
    case subject(SubjectError)

    public var description: String {
        switch self {
        case .short(let n, let need): "payload is \(n) bytes; a header needs \(need)"
        case .unsupportedVersion(let v): "payload version \(v) is not supported (this decoder reads version \(WireCodec.version))"
        case .unknownKind(let k): "unknown event kind \(k) at byte 1"
        case .bodyTooShort(let k, let n, let need): "\(k) body is \(n) bytes; it needs \(need)"
        case .frames(let c): "a message has 2 frames (subject, payload); this one has \(c)"
        case .subject(let e): e.description
        }
    }
}

/// The binary payload of the second ZeroMQ frame (docs/PROTOCOL.md). All integers little-endian.
///
/// ```
/// off size field
///   0   1  version (1)
///   1   1  kind (EventKind)
///   2   1  flags (side, status category, gap scope)
///   3   1  reserved, 0
///   4   2  source
///   6   2  body length in bytes (32 in version 1)
///   8   8  seq           gapless per stream (the subject's first token)
///  16   8  subject_seq   gapless per subject
///  24   8  event_time    ns since the epoch, UTC
///  32   8  known_time    ns since the epoch, UTC
///  40  32  body: four signed 64-bit words, meaning by kind (see `Event`)
/// ```
public enum WireCodec {
    public static let version: UInt8 = 1
    public static let headerSize = 40
    public static let bodySize = 32
    public static let payloadSize = headerSize + bodySize

    /// Writes one payload of `payloadSize` bytes at `out`.
    /// - warning: `out` must have room for `payloadSize` bytes.
    @inlinable
    public static func encode(_ e: Event, subjectSeq: UInt64, into out: UnsafeMutableRawPointer) {
        out.storeBytes(of: version, toByteOffset: 0, as: UInt8.self)
        out.storeBytes(of: e.kind.rawValue, toByteOffset: 1, as: UInt8.self)
        out.storeBytes(of: e.flags, toByteOffset: 2, as: UInt8.self)
        out.storeBytes(of: 0, toByteOffset: 3, as: UInt8.self)
        out.storeBytes(of: e.source.littleEndian, toByteOffset: 4, as: UInt16.self)
        out.storeBytes(of: UInt16(bodySize).littleEndian, toByteOffset: 6, as: UInt16.self)
        out.storeBytes(of: e.seq.littleEndian, toByteOffset: 8, as: UInt64.self)
        out.storeBytes(of: subjectSeq.littleEndian, toByteOffset: 16, as: UInt64.self)
        out.storeBytes(of: e.eventTime.rawValue.littleEndian, toByteOffset: 24, as: Int64.self)
        out.storeBytes(of: e.knownTime.rawValue.littleEndian, toByteOffset: 32, as: Int64.self)
        out.storeBytes(of: e.a.littleEndian, toByteOffset: 40, as: Int64.self)
        out.storeBytes(of: e.b.littleEndian, toByteOffset: 48, as: Int64.self)
        out.storeBytes(of: e.c.littleEndian, toByteOffset: 56, as: Int64.self)
        out.storeBytes(of: e.d.littleEndian, toByteOffset: 64, as: Int64.self)
    }

    public static func encode(_ e: Event, subjectSeq: UInt64) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: payloadSize) { buf, n in
            encode(e, subjectSeq: subjectSeq, into: buf.baseAddress!)
            n = payloadSize
        }
    }

    /// Reads a payload. The returned event's `subjectID` is 0: the subject travels in the first frame.
    /// - Throws: `WireError` for a short payload, another version, an unknown kind or a short body.
    public static func decode(_ p: UnsafeRawBufferPointer) throws(WireError) -> (event: Event, subjectSeq: UInt64) {
        guard p.count >= headerSize else { throw .short(length: p.count, needed: headerSize) }
        let v = p.load(fromByteOffset: 0, as: UInt8.self)
        guard v == version else { throw .unsupportedVersion(v) }
        let k = p.load(fromByteOffset: 1, as: UInt8.self)
        guard let kind = EventKind(rawValue: k) else { throw .unknownKind(k) }
        let bodyLength = Int(UInt16(littleEndian: p.loadUnaligned(fromByteOffset: 6, as: UInt16.self)))
        let available = p.count - headerSize
        guard bodyLength >= bodySize, available >= bodySize else {
            throw .bodyTooShort(kind: kind, length: min(bodyLength, available), needed: bodySize)
        }
        // A body announced longer than the frame holds is a cut message, not a later minor version.
        guard bodyLength <= available else { throw .bodyTooShort(kind: kind, length: available, needed: bodyLength) }
        func i64(_ o: Int) -> Int64 { Int64(littleEndian: p.loadUnaligned(fromByteOffset: o, as: Int64.self)) }
        let e = Event(subjectID: 0, kind: kind, flags: p.load(fromByteOffset: 2, as: UInt8.self),
                      source: UInt16(littleEndian: p.loadUnaligned(fromByteOffset: 4, as: UInt16.self)),
                      eventTime: Nanos(i64(24)), knownTime: Nanos(i64(32)), seq: UInt64(bitPattern: i64(8)),
                      a: i64(40), b: i64(48), c: i64(56), d: i64(64))
        return (e, UInt64(bitPattern: i64(16)))
    }

    public static func decode(_ bytes: [UInt8]) throws(WireError) -> (event: Event, subjectSeq: UInt64) {
        // A typed-throws closure here crashes Swift 6.3's SILGen; carry the outcome out in a Result.
        let r: Result<(event: Event, subjectSeq: UInt64), WireError> = bytes.withUnsafeBytes { p in
            do { return .success(try decode(p)) } catch { return .failure(error as! WireError) }
        }
        return try r.get()
    }
}

/// A message as a subscriber sees it: the subject from frame one, the decoded payload from frame two.
public struct WireEvent: Sendable, Equatable {
    public var subject: String
    public var subjectSeq: UInt64
    public var event: Event
    public init(subject: String, subjectSeq: UInt64, event: Event) {
        self.subject = subject; self.subjectSeq = subjectSeq; self.event = event
    }

    /// Decodes a two-frame message. - Throws: `WireError`.
    public init(subjectFrame: [UInt8], payload: [UInt8]) throws(WireError) {
        let (e, s) = try WireCodec.decode(payload)
        self.init(subject: String(decoding: subjectFrame, as: UTF8.self), subjectSeq: s, event: e)
    }
}
