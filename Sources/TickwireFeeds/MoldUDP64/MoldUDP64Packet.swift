/// The MoldUDP64 downstream packet: a 20-byte header (session 10 ASCII, sequence number of the first message
/// 8, message count 2, all big-endian), then `count` blocks of a 2-byte length and a message.
/// Count 0 is a heartbeat; 0xFFFF marks the end of the session.
public enum MoldUDP64 {
    public static let headerSize = 20
    public static let sessionSize = 10
    public static let endOfSession: UInt16 = 0xFFFF
    /// A re-request is exactly a header: session, first sequence wanted, count wanted.
    public static let requestSize = 20
    /// Payload bytes a player puts in one datagram (fits a 1500-byte Ethernet MTU with IP and UDP headers).
    public static let maxPayload = 1400
    /// The most messages one datagram can hold: the largest IPv4 UDP payload (65,507 bytes) less the header,
    /// in blocks of the shortest ITCH message (12 bytes) and its 2-byte length. A malformed datagram's announced
    /// count is believed no further than this.
    public static let maxMessagesPerDatagram = (65_507 - headerSize) / (2 + 12)

    /// Why a datagram was dropped whole; the source counts each kind (`bad_packets.<counterName>`).
    public enum Fault: String, CaseIterable, Sendable {
        /// Fewer than 20 bytes: not even a header.
        case truncatedHeader = "truncated_header"
        /// The session is not the one this receiver follows.
        case wrongSession = "wrong_session"
        /// The header announces more blocks than the datagram holds, or bytes follow the announced blocks.
        case countMismatch = "count_mismatch"
        /// A block's length runs past the end of the datagram.
        case lengthOverrun = "length_overrun"
        /// A block holds no valid ITCH 5.0 message (zero length, unknown type, a length not its type's).
        case badMessage = "bad_message"

        public var counterName: String { rawValue }

        /// The kind of a validation error from `forEachMessage`.
        public init(_ problem: ITCHError.Problem) {
            switch problem {
            case .truncatedPacketHeader: self = .truncatedHeader
            case .missingBlocks, .trailingBytes: self = .countMismatch
            case .truncatedPrefix, .truncatedMessage: self = .lengthOverrun
            case .zeroLengthPrefix, .unknownType, .badLength: self = .badMessage
            }
        }
    }

    /// The parsed header of a packet.
    public struct Header: Equatable, Sendable {
        public var session: [UInt8]
        public var sequence: UInt64
        public var count: UInt16
        public var isHeartbeat: Bool { count == 0 }
        public var isEndOfSession: Bool { count == MoldUDP64.endOfSession }
    }

    /// Reads a header. - Throws: `ITCHError` (`truncatedPacketHeader`) when fewer than 20 bytes arrived.
    public static func header(_ packet: UnsafeRawBufferPointer) throws(ITCHError) -> Header {
        guard packet.count >= headerSize, let base = packet.baseAddress else {
            throw ITCHError(offset: 0, problem: .truncatedPacketHeader(available: packet.count))
        }
        return Header(session: Array(packet[0..<sessionSize]),
                      sequence: UInt64(bigEndian: base.loadUnaligned(fromByteOffset: 10, as: UInt64.self)),
                      count: UInt16(bigEndian: base.loadUnaligned(fromByteOffset: 18, as: UInt16.self)))
    }

    /// Calls `body` with each message of a packet, in place, with its MoldUDP64 sequence number. The whole
    /// packet is validated before the first call, so a bad packet delivers nothing.
    /// - Throws: `ITCHError` with the offset in the datagram of the first bad block.
    /// - warning: the messages point into `packet`; do not keep them past `body`.
    @inlinable
    public static func forEachMessage(in packet: UnsafeRawBufferPointer,
                                      _ body: (UInt64, ITCHMessage) -> Void) throws(ITCHError) {
        let h = try validate(packet)
        forEachMessage(inValidated: packet, h, body)
    }

    /// Checks a whole packet: a header, exactly `count` well-formed blocks, nothing after them. Heartbeats and
    /// end-of-session are checked for their header only.
    /// - Throws: `ITCHError` with the offset in the datagram of the first bad block.
    @inlinable
    public static func validate(_ packet: UnsafeRawBufferPointer) throws(ITCHError) -> Header {
        let h = try header(packet)
        if h.isEndOfSession || h.isHeartbeat { return h }
        let base = packet.baseAddress!
        var offset = headerSize
        for found in 0..<Int(h.count) {
            var reader = BinaryFILEReader(UnsafeRawBufferPointer(start: base, count: packet.count), offset: offset)
            guard try reader.next() != nil else {
                throw ITCHError(offset: offset, problem: .missingBlocks(announced: Int(h.count), found: found))
            }
            offset = reader.offset
        }
        if offset != packet.count {
            throw ITCHError(offset: offset, problem: .trailingBytes(count: packet.count - offset))
        }
        return h
    }

    /// Calls `body` with each message of a packet that `validate` accepted, with its header.
    /// - warning: the messages point into `packet`; do not keep them past `body`.
    @inlinable
    public static func forEachMessage(inValidated packet: UnsafeRawBufferPointer, _ h: Header,
                                      _ body: (UInt64, ITCHMessage) -> Void) {
        if h.isEndOfSession || h.isHeartbeat { return }
        let base = packet.baseAddress!
        var offset = headerSize
        for i in 0..<Int(h.count) {
            let length = Int(UInt16(bigEndian: base.loadUnaligned(fromByteOffset: offset, as: UInt16.self)))
            body(h.sequence &+ UInt64(i), ITCHMessage(base: base + offset + 2, length: length))
            offset += 2 + length
        }
    }

    /// Writes a header into `out` at its start.
    public static func writeHeader(session: [UInt8], sequence: UInt64, count: UInt16, into out: inout [UInt8]) {
        precondition(session.count == sessionSize)
        out.append(contentsOf: session)
        for i in (0..<8).reversed() { out.append(UInt8(truncatingIfNeeded: sequence >> (8 * UInt64(i)))) }
        out.append(UInt8(truncatingIfNeeded: count >> 8)); out.append(UInt8(truncatingIfNeeded: count))
    }

    /// A session name padded with spaces (or truncated) to 10 bytes.
    public static func session(_ text: String) -> [UInt8] {
        var bytes = Array(text.utf8.prefix(sessionSize))
        while bytes.count < sessionSize { bytes.append(0x20) }
        return bytes
    }
}
