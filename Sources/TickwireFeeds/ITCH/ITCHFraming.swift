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

    /// Steps past the frame that made `next()` throw. A frame whose length was readable is skipped whole; after
    /// a zero prefix the reader resynchronises on the type byte that follows when it names a known type (the
    /// message length is then implied by the type), else it moves on by the 2 prefix bytes; a truncated tail
    /// ends the buffer.
    public mutating func skipBadFrame() {
        let remaining = buffer.count - offset
        guard remaining >= 2, let base = buffer.baseAddress else { offset = buffer.count; return }
        let length = Int(UInt16(bigEndian: base.loadUnaligned(fromByteOffset: offset, as: UInt16.self)))
        if length == 0 {
            let implied = remaining > 2 ? ITCHMessageType.length(ofType: base.load(fromByteOffset: offset + 2, as: UInt8.self)) : 0
            offset = min(buffer.count, offset + 2 + implied)
        } else {
            offset = min(buffer.count, offset + 2 + length)
        }
    }
}
