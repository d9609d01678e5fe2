import CTickwireSys
#if canImport(Glibc)
import Glibc
#endif

/// Takes one GLIMPSE-style snapshot over SoupBinTCP without blocking: `pump` does what the socket allows now,
/// so the MoldUDP64 source keeps reading its lines (and buffering what they bring) while the snapshot comes.
///
/// Connects, logs in (`L`: username, password, any session, sequence 1), collects the sequenced messages — each
/// must be a well-formed ITCH 5.0 message — until the end of snapshot (`G`), then logs out (`O`) and closes.
/// Heartbeats (`R`) every second. Fails, with what and where, on a refused connection, a rejected login, a
/// packet of a wrong length or type, a message that is no ITCH 5.0 message, an end of session before the end
/// of snapshot, more than `maxBytes` of snapshot, or no end of snapshot within `timeoutNanos`.
public final class GlimpseClient {
    public struct Options: Sendable, Equatable {
        public var endpoint: UDPEndpoint
        public var username = ""
        public var password = ""
        /// The whole snapshot must arrive within this.
        public var timeoutNanos: Int64 = 10_000_000_000
        /// The most snapshot bytes held (BinaryFILE framing).
        public var maxBytes = 1 << 30
        public init(endpoint: UDPEndpoint) { self.endpoint = endpoint }
    }

    /// A complete snapshot.
    public struct Snapshot: Sendable {
        /// The ITCH messages in BinaryFILE framing (2-byte big-endian length before each).
        public var messages: [UInt8]
        public var count: Int
        /// The MoldUDP64 sequence to resume from: the first one the snapshot does not include.
        public var nextSequence: UInt64
        public var session: String
    }

    public enum State {
        case inProgress
        case done(Snapshot)
        case failed(String)
    }

    /// The largest packet the server may send: type and the longest ITCH message (50 bytes), or a login
    /// accepted (31).
    public static let maxServerPacket = 1 + 50

    public let options: Options
    let socket: TCPSocket
    let started: Int64
    var connected = false
    var framer = SoupBinTCPFramer(maxPacket: GlimpseClient.maxServerPacket)
    var out: [UInt8] = []
    var lastSend: Int64
    var session = ""
    var loggedIn = false
    var messages: [UInt8] = []
    var count = 0
    var bytesRead = 0
    public private(set) var state: State = .inProgress

    /// Starts connecting. - Throws: `FeedConfigError` when no socket can be made or the address is refused at once.
    public init(_ options: Options, now: Int64 = tw_monotonic_ns()) throws(FeedConfigError) {
        self.options = options
        socket = try TCPSocket.connecting(to: options.endpoint)
        started = now; lastSend = now
        SoupBinTCP.append(.loginRequest, SoupBinTCP.loginRequest(username: options.username, password: options.password,
                                                                 session: "", sequence: 1), to: &out)
    }

    public var fd: Int32 { socket.fd }
    var endpointText: String { "snapshot server tcp://\(options.endpoint.host):\(options.endpoint.port)" }

    /// Does what the socket allows now. - Returns: the state after.
    @discardableResult
    public func pump(now: Int64 = tw_monotonic_ns()) -> State {
        guard case .inProgress = state else { return state }
        if now - started > options.timeoutNanos {
            return fail("no end of snapshot within \(options.timeoutNanos / 1_000_000) ms (\(count) messages, \(bytesRead) bytes read)")
        }
        if !connected {
            let ev = TCPSocket.poll([(socket.fd, Int16(POLLOUT))], timeoutMillis: 0)[0]
            if ev == 0 { return state }
            let err = socket.connectError
            if err != 0 { return fail("cannot connect: \(String(cString: strerror(err)))") }
            connected = true
        }
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            let r = buffer.withUnsafeMutableBytes { socket.read(into: $0) }
            guard case .data(let n) = r else {
                if case .closed = r { return fail("the server closed the connection \(loggedIn ? "before the end of snapshot" : "before accepting the login") (\(count) messages)") }
                break
            }
            bytesRead += n
            buffer.withUnsafeBytes { framer.append(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
            do {
                while let (type, payload) = try framer.next() {
                    handle(type, payload)
                    guard case .inProgress = state else { return state }
                }
            } catch {
                return fail("a packet's length is 0 or over \(GlimpseClient.maxServerPacket) bytes, after \(bytesRead - framer.buffered) bytes")
            }
        }
        if now - lastSend > 1_000_000_000 && out.isEmpty { SoupBinTCP.append(.clientHeartbeat, to: &out) }
        flush(now)
        return state
    }

    func flush(_ now: Int64) {
        guard !out.isEmpty else { return }
        if let n = out.withUnsafeBytes({ socket.write($0) }), n > 0 { out.removeFirst(n); lastSend = now }
    }

    func fail(_ why: String) -> State {
        state = .failed("\(endpointText): \(why)")
        return state
    }

    func handle(_ type: UInt8, _ payload: ArraySlice<UInt8>) {
        switch SoupBinTCP.PacketType(rawValue: type) {
        case .loginAccepted:
            guard !loggedIn, payload.count == SoupBinTCP.loginAcceptedPayload else { _ = fail("a login accepted packet of \(payload.count) bytes, or a second one"); return }
            loggedIn = true
            session = SoupBinTCP.parseAlpha(payload.prefix(SoupBinTCP.sessionSize))
        case .loginRejected:
            let reason = payload.first.map { $0 == SoupBinTCP.notAuthorized ? "not authorized" : $0 == SoupBinTCP.sessionNotAvailable ? "session not available" : "reason \($0)" } ?? "no reason"
            _ = fail("login rejected: \(reason)")
        case .sequencedData:
            guard loggedIn else { _ = fail("sequenced data before the login was accepted"); return }
            if let next = GlimpseSnapshot.parseEndOfSnapshot(payload) {
                state = .done(Snapshot(messages: messages, count: count, nextSequence: next, session: session))
                var bye = [UInt8]()
                SoupBinTCP.append(.logoutRequest, to: &bye)
                _ = bye.withUnsafeBytes { socket.write($0) }
                return
            }
            guard let t = payload.first else { _ = fail("an empty sequenced message (number \(count + 1))"); return }
            if let problem = validateITCH(type: t, length: payload.count) {
                _ = fail("snapshot message \(count + 1) is no ITCH 5.0 message: \(ITCHError(offset: 0, problem: problem).description)")
                return
            }
            guard messages.count + 2 + payload.count <= options.maxBytes else { _ = fail("the snapshot is over \(options.maxBytes) bytes"); return }
            messages.append(UInt8(payload.count >> 8)); messages.append(UInt8(payload.count & 0xff))
            messages.append(contentsOf: payload)
            count += 1
        case .serverHeartbeat, .debug, .unsequencedData: break
        case .endOfSession: _ = fail("end of session before the end of snapshot (\(count) messages)")
        default:
            _ = fail("unexpected packet type 0x\(String(type, radix: 16)) from the server")
        }
    }
}
