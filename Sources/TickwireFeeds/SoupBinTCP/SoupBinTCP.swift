/// SoupBinTCP 4.0, NASDAQ's framing for its TCP services (GLIMPSE among them).
///
/// ```
///  0      2      3
///  +------+------+---------------------+
///  | len  | type | payload (len − 1)   |   len: u16 big-endian, counts type + payload
///  +------+------+---------------------+
/// ```
/// Client → server: `L` login request (username 6, password 10, requested session 10, requested sequence
/// number 20: alpha fields left-justified and space-padded, numeric ones ASCII digits right-justified and
/// space-padded), `R` client heartbeat, `O` logout request, `U` unsequenced data.
/// Server → client: `A` login accepted (session 10, sequence number 20 — the next sequenced message's number),
/// `J` login rejected (reason 1: `A` not authorized, `S` session not available), `S` sequenced data, `U`
/// unsequenced data, `H` server heartbeat, `Z` end of session. `+` debug packets may come either way.
public enum SoupBinTCP {
    public enum PacketType: UInt8, Sendable, CaseIterable {
        case debug = 0x2B              // +
        case loginAccepted = 0x41      // A
        case loginRejected = 0x4A      // J
        case sequencedData = 0x53      // S
        case unsequencedData = 0x55    // U
        case serverHeartbeat = 0x48    // H
        case endOfSession = 0x5A       // Z
        case loginRequest = 0x4C       // L
        case clientHeartbeat = 0x52    // R
        case logoutRequest = 0x4F      // O
    }

    public static let usernameSize = 6
    public static let passwordSize = 10
    public static let sessionSize = 10
    public static let sequenceSize = 20
    /// Payload of a login request: 6 + 10 + 10 + 20.
    public static let loginRequestPayload = usernameSize + passwordSize + sessionSize + sequenceSize
    /// Payload of a login accepted: 10 + 20.
    public static let loginAcceptedPayload = sessionSize + sequenceSize
    /// Reject reasons.
    public static let notAuthorized = UInt8(ascii: "A")
    public static let sessionNotAvailable = UInt8(ascii: "S")

    /// Appends one packet: length, type, payload.
    public static func append(_ type: PacketType, _ payload: UnsafeRawBufferPointer, to out: inout [UInt8]) {
        precondition(payload.count < Int(UInt16.max), "a SoupBinTCP payload is at most 65,534 bytes")
        let length = payload.count + 1
        out.append(UInt8(length >> 8)); out.append(UInt8(length & 0xff)); out.append(type.rawValue)
        out.append(contentsOf: payload)
    }

    public static func append(_ type: PacketType, _ payload: [UInt8] = [], to out: inout [UInt8]) {
        payload.withUnsafeBytes { append(type, $0, to: &out) }
    }

    /// An alpha field: left-justified, space-padded (or cut) to `size`.
    public static func alpha(_ text: String, _ size: Int) -> [UInt8] {
        var b = Array(text.utf8.prefix(size))
        while b.count < size { b.append(0x20) }
        return b
    }

    /// A numeric field: ASCII digits right-justified, space-padded on the left, `size` bytes.
    public static func numeric(_ value: UInt64, _ size: Int) -> [UInt8] {
        var b = Array(String(value).utf8)
        precondition(b.count <= size)
        while b.count < size { b.insert(0x20, at: 0) }
        return b
    }

    /// Reads a numeric field: spaces then digits (all spaces: 0). Nil when anything else is there or it overflows.
    public static func parseNumeric(_ bytes: some Collection<UInt8>) -> UInt64? {
        var v: UInt64 = 0
        var digits = false
        for b in bytes {
            if b == 0x20 { if digits { return nil }; continue }
            guard (0x30...0x39).contains(b) else { return nil }
            digits = true
            let (m, o1) = v.multipliedReportingOverflow(by: 10)
            let (s, o2) = m.addingReportingOverflow(UInt64(b - 0x30))
            if o1 || o2 { return nil }
            v = s
        }
        return v
    }

    /// Reads an alpha field with its padding removed.
    public static func parseAlpha(_ bytes: some Collection<UInt8>) -> String {
        String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: " ")
    }

    /// A login request's payload.
    public static func loginRequest(username: String, password: String, session: String, sequence: UInt64) -> [UInt8] {
        alpha(username, usernameSize) + alpha(password, passwordSize) + alpha(session, sessionSize) + numeric(sequence, sequenceSize)
    }

    /// Why a peer's bytes were refused; the connection is closed and the kind counted (`counterName`).
    public enum Fault: String, CaseIterable, Sendable, Error {
        /// A length of 0 (no type byte) or above the side's maximum packet.
        case badLength = "bad_length"
        /// A type byte this side does not accept from its peer.
        case badType = "bad_type"
        /// A packet before login, or a login with the wrong payload size or unreadable fields.
        case badLogin = "bad_login"
        /// No login request within the login timeout.
        case loginTimeout = "login_timeout"
        /// Nothing from the peer for the idle timeout (15 s in the protocol).
        case idleTimeout = "idle_timeout"
        /// The output queued for a peer that does not read passed the cap.
        case outputOverflow = "output_overflow"
        public var counterName: String { rawValue }
    }
}

/// Cuts a byte stream into SoupBinTCP packets, bounded: a declared length of 0 or above `maxPacket` is a
/// `SoupBinTCP.Fault.badLength` (the stream cannot be trusted after it: the caller closes the connection).
public struct SoupBinTCPFramer: Sendable {
    public let maxPacket: Int
    var buffer: [UInt8] = []
    var start = 0

    public init(maxPacket: Int) { self.maxPacket = maxPacket }

    /// Bytes waiting for the rest of their packet.
    public var buffered: Int { buffer.count - start }

    public mutating func append(_ bytes: UnsafeRawBufferPointer) {
        if start > 0 && start == buffer.count { buffer.removeAll(keepingCapacity: true); start = 0 }
        buffer.append(contentsOf: bytes)
    }

    /// The next whole packet (type, payload), nil when more bytes are needed.
    /// - Throws: `SoupBinTCP.Fault.badLength` for a length of 0 or above `maxPacket`.
    public mutating func next() throws(SoupBinTCP.Fault) -> (type: UInt8, payload: ArraySlice<UInt8>)? {
        guard buffer.count - start >= 2 else { return nil }
        let length = Int(buffer[start]) << 8 | Int(buffer[start + 1])
        guard length >= 1, length <= maxPacket else { throw .badLength }
        guard buffer.count - start >= 2 + length else { return nil }
        let type = buffer[start + 2]
        let payload = buffer[(start + 3)..<(start + 2 + length)]
        start += 2 + length
        if start > 1 << 16 && start * 2 > buffer.count {
            // Compact now and then so a long stream does not grow the buffer; the slice above keeps its own copy.
            let rest = Array(buffer[start...])
            buffer = rest; start = 0
            return (type, payload)
        }
        return (type, payload)
    }
}
