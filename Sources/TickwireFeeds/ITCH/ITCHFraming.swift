/// Why ITCH input was refused: what was found, what was expected, and the byte offset of the frame.
public struct ITCHError: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Problem: Equatable, Sendable {
        /// Fewer than 2 bytes remain where a length prefix should start.
        case truncatedPrefix(available: Int)
        /// The prefix declares more bytes than remain.
        case truncatedMessage(declared: Int, available: Int)
        /// A length prefix of 0 (no ITCH message is empty; the framing is not BinaryFILE).
        case zeroLengthPrefix
        /// The type byte names no ITCH 5.0 message.
        case unknownType(UInt8)
        /// The declared length does not fit the type.
        case badLength(type: ITCHMessageType, expected: Int, declared: Int)
        /// MoldUDP64: fewer than 20 bytes of header.
        case truncatedPacketHeader(available: Int)
        /// MoldUDP64: the header announces more message blocks than the datagram holds.
        case missingBlocks(announced: Int, found: Int)
        /// MoldUDP64: bytes left over after the announced blocks.
        case trailingBytes(count: Int)

        /// A short stable name, used as the counter key (`errors.zero_length_prefix`).
        public var counterName: String {
            switch self {
            case .truncatedPrefix, .truncatedMessage: "truncated"
            case .zeroLengthPrefix: "zero_length_prefix"
            case .unknownType: "unknown_type"
            case .badLength: "bad_length"
            case .truncatedPacketHeader, .missingBlocks, .trailingBytes: "bad_packet"
            }
        }
    }

    /// The byte offset of the offending frame (its length prefix) in the file or datagram.
    public let offset: Int
    public let problem: Problem

    public init(offset: Int, problem: Problem) { self.offset = offset; self.problem = problem }

    public var description: String {
        let at = "ITCH frame at byte \(offset)"
        switch problem {
        case .truncatedPrefix(let n):
            return "\(at): truncated: a 2-byte length prefix was expected, \(n) byte(s) remain"
        case .truncatedMessage(let declared, let n):
            return "\(at): truncated: the prefix declares \(declared) bytes, \(n) remain"
        case .zeroLengthPrefix:
            return "\(at): length prefix is 0; a message of 12 to 50 bytes was expected (is this BinaryFILE framing?)"
        case .unknownType(let t):
            let shown = t >= 0x20 && t < 0x7f ? "'\(Character(Unicode.Scalar(t)))'" : "0x\(String(t, radix: 16))"
            return "\(at): unknown message type \(shown); one of the 23 ITCH 5.0 types was expected"
        case .badLength(let type, let expected, let declared):
            return "\(at): message type '\(type.letter)' declares \(declared) bytes; it must be \(expected)"
        case .truncatedPacketHeader(let n):
            return "MoldUDP64 packet: \(n) bytes; a 20-byte header was expected"
        case .missingBlocks(let announced, let found):
            return "MoldUDP64 packet: header announces \(announced) messages, \(found) found before byte \(offset)"
        case .trailingBytes(let n):
            return "MoldUDP64 packet: \(n) bytes after the last announced message, at byte \(offset)"
        }
    }
}

/// What a source does with bad input.
public enum ErrorPolicy: String, Sendable, CaseIterable {
    /// Throw the first error: the source ends with it.
    case stop
    /// Count the error, skip the bad frame or row, and carry on.
    case skip
}

/// Checks one length-prefixed message: the type must be one of the 23 and the length its own.
@inlinable @inline(__always) func validateITCH(type: UInt8, length: Int) -> ITCHError.Problem? {
    let expected = ITCHMessageType.length(ofType: type)
    if expected == length { return nil }
    if expected == 0 { return .unknownType(type) }
    return .badLength(type: ITCHMessageType(rawValue: type)!, expected: expected, declared: length)
}

/// Walks BinaryFILE framing (2-byte big-endian length, then the message) over a buffer, in place.
///
/// On bad input `next()` throws and leaves `offset` at the bad frame; `skipBadFrame()` then steps past it, so
/// the caller decides whether to stop or to skip and count.
/// - warning: messages point into `buffer`; the caller keeps the buffer alive while it uses them.
public struct BinaryFILEReader {
    public let buffer: UnsafeRawBufferPointer
    /// Byte offset of the next frame.
    public var offset: Int

    public init(_ buffer: UnsafeRawBufferPointer, offset: Int = 0) { self.buffer = buffer; self.offset = offset }

    /// True when every byte has been consumed.
    @inlinable public var atEnd: Bool { offset >= buffer.count }

    /// The next message, or nil at the end of the buffer.
    /// - Throws: `ITCHError` naming the frame's offset and what was expected.
    /// - Complexity: O(1).
    @inlinable @inline(__always)
    public mutating func next() throws(ITCHError) -> ITCHMessage? {
        let remaining = buffer.count &- offset
        if remaining <= 0 { return nil }
        guard let base = buffer.baseAddress else { return nil }
        if remaining < 2 { throw ITCHError(offset: offset, problem: .truncatedPrefix(available: remaining)) }
        let length = Int(UInt16(bigEndian: base.loadUnaligned(fromByteOffset: offset, as: UInt16.self)))
        if length == 0 { throw ITCHError(offset: offset, problem: .zeroLengthPrefix) }
        if length > remaining &- 2 {
            throw ITCHError(offset: offset, problem: .truncatedMessage(declared: length, available: remaining &- 2))
        }
        let start = base + (offset &+ 2)
        if let problem = validateITCH(type: start.load(as: UInt8.self), length: length) {
            throw ITCHError(offset: offset, problem: problem)
        }
        offset &+= 2 &+ length
        return ITCHMessage(base: start, length: length)
    }

    /// How many well-formed frames in a row (or fewer that end the buffer exactly) make a position plausible
    /// when resynchronising. One frame passes by chance with odds of about 23 in 256 × 65,536 (a type byte
    /// among the 23, and the 2-byte prefix equal to that type's length); four in a row practically never do.
    public static let resyncChain = 4

    /// Steps past the frame that made `next()` throw, to the next position where the framing is plausible
    /// again, and says what it stepped over.
    ///
    /// ITCH 5.0 messages have fixed lengths by type, so a length prefix that disagrees with its type is damage,
    /// never a longer message. The reader first tries the type's own length (a damaged prefix in front of an
    /// intact type byte: exactly one message lost) and takes that position when `resyncChain` well-formed
    /// frames follow it; otherwise it scans forward byte by byte for the first such position. After a zero
    /// prefix followed by a known type it moves on by the type's length without the check (files written
    /// without prefixes, such as the ritch synthetic capture: every frame counts as one error); after any
    /// other zero prefix it moves on by the 2 prefix bytes. A truncated tail ends the buffer.
    /// - Returns: the bytes stepped over and the damaged messages among them: exact when the type framed the
    ///   message, a lower bound (1) when the reader had to scan.
    /// - Complexity: O(1) when only the prefix was damaged; O(skipped bytes × `resyncChain`) when scanning.
    @discardableResult
    public mutating func skipBadFrame() -> SkippedInput {
        let start = offset
        let remaining = buffer.count - offset
        guard remaining >= 2, let base = buffer.baseAddress else {
            offset = buffer.count
            return SkippedInput(bytes: max(0, remaining), messages: remaining > 0 ? 1 : 0)
        }
        let length = Int(UInt16(bigEndian: base.loadUnaligned(fromByteOffset: offset, as: UInt16.self)))
        let implied = remaining > 2 ? ITCHMessageType.length(ofType: base.load(fromByteOffset: offset + 2, as: UInt8.self)) : 0
        if length == 0 {
            offset = min(buffer.count, offset + 2 + implied)
            return SkippedInput(bytes: offset - start, messages: 1)
        }
        if implied > 0, offset + 2 + implied <= buffer.count, plausibleFrames(at: offset + 2 + implied) {
            offset += 2 + implied
            return SkippedInput(bytes: offset - start, messages: 1)
        }
        var p = offset + 1
        while p < buffer.count && !plausibleFrames(at: p) { p += 1 }
        offset = min(p, buffer.count)
        return SkippedInput(bytes: offset - start, messages: 1)
    }

    /// Whether `resyncChain` well-formed frames start at `position` (fewer when they end the buffer exactly).
    func plausibleFrames(at position: Int) -> Bool {
        guard let base = buffer.baseAddress else { return true }
        var q = position
        for _ in 0..<BinaryFILEReader.resyncChain {
            if q == buffer.count { return true }
            guard buffer.count - q >= 3 else { return false }
            let length = Int(UInt16(bigEndian: base.loadUnaligned(fromByteOffset: q, as: UInt16.self)))
            guard length != 0, ITCHMessageType.length(ofType: base.load(fromByteOffset: q + 2, as: UInt8.self)) == length,
                  q + 2 + length <= buffer.count else { return false }
            q += 2 + length
        }
        return true
    }
}

/// What `BinaryFILEReader.skipBadFrame()` stepped over.
public struct SkippedInput: Equatable, Sendable {
    public var bytes: Int
    /// Damaged messages stepped over: exact when the type's length framed the message, a lower bound when the
    /// reader scanned for the next plausible frame (it cannot know how many messages the damage spanned).
    public var messages: Int
    public init(bytes: Int, messages: Int) { self.bytes = bytes; self.messages = messages }
}
