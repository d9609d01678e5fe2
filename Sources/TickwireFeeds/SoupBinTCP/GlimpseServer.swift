import CTickwireSys

/// A GLIMPSE-style snapshot server over SoupBinTCP, driven by its owner's loop (`serve` never blocks), so the
/// MoldUDP64 player serves snapshots of the books as they stand at each login from the thread that plays.
///
/// A client logs in (`L`); the server accepts (`A`, its session and sequence number 1 — or the sequence the
/// client asked for, within the snapshot), then sends the snapshot as sequenced data (`S`): the messages of
/// `ITCHSnapshotState.forEachMessage`, the end of snapshot (`G`, the MoldUDP64 sequence to resume from) last.
/// It heartbeats (`H`) after a second without sending, and closes on the client's logout (`O`).
///
/// Bounded against any peer: at most `maxConnections` at once (more are accepted and closed at once,
/// `refused`); a login within `loginTimeoutNanos`; nothing received, or no output taken, for
/// `idleTimeoutNanos` closes; client
/// packets over 64 bytes, of a type the server does not take, or anything but a login first close the
/// connection; a snapshot larger than `maxOutputBytes` is not sent (the connection is closed). Each is
/// counted by kind (`faults.<SoupBinTCP.Fault>`); nothing a client sends can stop the owner's loop.
public final class GlimpseServer {
    public struct Options: Sendable, Equatable {
        public var maxConnections = 16
        public var loginTimeoutNanos: Int64 = 5_000_000_000
        public var idleTimeoutNanos: Int64 = 15_000_000_000
        /// The most bytes queued for one connection: the whole snapshot must fit.
        public var maxOutputBytes = 64 << 20
        /// nil: any username and password are accepted.
        public var username: String? = nil
        public var password: String? = nil
        public init() {}
    }

    public struct Counts: Sendable, Equatable {
        public var connections = 0, refused = 0, logins = 0, rejectedLogins = 0, snapshots = 0, messages = 0, logouts = 0
        public var faults: [SoupBinTCP.Fault: Int] = [:]
        public var faultCount: Int { faults.values.reduce(0, +) }
        public func pairs() -> [(name: String, value: UInt64)] {
            var out: [(name: String, value: UInt64)] = [
                ("snapshot.connections", UInt64(connections)), ("snapshot.refused", UInt64(refused)),
                ("snapshot.logins", UInt64(logins)), ("snapshot.rejected_logins", UInt64(rejectedLogins)),
                ("snapshot.served", UInt64(snapshots)), ("snapshot.messages", UInt64(messages)),
                ("snapshot.faults", UInt64(faultCount))]
            for f in SoupBinTCP.Fault.allCases { out.append(("snapshot.faults.\(f.counterName)", UInt64(faults[f] ?? 0))) }
            return out
        }
    }

    /// The largest packet a client may send: a login is 47 bytes with its type.
    public static let maxClientPacket = 64

    /// One client. `lastSend` is when it last took output (or connected).
    final class Connection {
        let socket: TCPSocket
        var framer = SoupBinTCPFramer(maxPacket: GlimpseServer.maxClientPacket)
        var out: [UInt8] = []
        var outStart = 0
        var loggedIn = false
        /// Close once `out` is flushed (after a reject or a logout).
        var closing = false
        let opened: Int64
        var lastReceive: Int64
        var lastSend: Int64
        init(_ socket: TCPSocket, now: Int64) { self.socket = socket; opened = now; lastReceive = now; lastSend = now }
        var pending: Int { out.count - outStart }
    }

    public let options: Options
    public let session: [UInt8]
    let listener: TCPSocket
    var connections: [Connection] = []
    public private(set) var counts = Counts()

    /// Binds and listens on `endpoint` now (port 0: see `endpoint`).
    /// - Throws: `FeedConfigError` when the endpoint cannot be bound.
    public init(on endpoint: UDPEndpoint, session: String, options: Options = Options()) throws(FeedConfigError) {
        self.options = options
        self.session = SoupBinTCP.alpha(session, SoupBinTCP.sessionSize)
        listener = try TCPSocket.listening(on: endpoint)
    }

    /// The endpoint it listens on (its real port when bound to port 0).
    public var endpoint: UDPEndpoint? { listener.localEndpoint }
    public var openConnections: Int { connections.count }

    /// Accepts, reads, answers and writes what is ready now; never blocks.
    /// - Parameters:
    ///   - state: the books as they stand; a login now gets a snapshot of them.
    ///   - nextSequence: the MoldUDP64 sequence of the first message `state` does not include.
    public func serve(state: ITCHSnapshotState, nextSequence: UInt64, now: Int64 = tw_monotonic_ns()) {
        while let c = listener.accept() {
            counts.connections += 1
            if connections.count >= options.maxConnections { counts.refused += 1; continue }   // closed as it goes
            connections.append(Connection(c, now: now))
        }
        if connections.isEmpty { return }
        var buffer = [UInt8](repeating: 0, count: 4096)
        var i = 0
        while i < connections.count {
            let c = connections[i]
            if let fault = step(c, &buffer, state, nextSequence, now) {
                counts.faults[fault, default: 0] += 1
                connections.remove(at: i)
                continue
            }
            if c.closing && c.pending == 0 { connections.remove(at: i); continue }
            i += 1
        }
    }

    /// One connection's turn; a fault closes it (the caller drops it, which closes the socket).
    func step(_ c: Connection, _ buffer: inout [UInt8], _ state: ITCHSnapshotState, _ next: UInt64, _ now: Int64) -> SoupBinTCP.Fault? {
        // Read what is there, at most 64 KiB a turn.
        var readBytes = 0
        readLoop: while readBytes < 1 << 16 && !c.closing {
            let r = buffer.withUnsafeMutableBytes { c.socket.read(into: $0) }
            switch r {
            case .wouldBlock: break readLoop
            case .closed: c.closing = true; c.out.removeAll(); c.outStart = 0; return nil
            case .data(let n):
                readBytes += n
                c.lastReceive = now
                buffer.withUnsafeBytes { c.framer.append(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
                do {
                    while let (type, payload) = try c.framer.next() {
                        if let fault = handle(c, type, payload, state, next) { return fault }
                        if c.closing { break readLoop }
                    }
                } catch { return error }
            }
        }
        if !c.loggedIn && !c.closing && now - c.opened > options.loginTimeoutNanos { return .loginTimeout }
        if c.loggedIn && !c.closing && now - c.lastReceive > options.idleTimeoutNanos { return .idleTimeout }
        // A peer that stops reading holds its whole snapshot here: as long without taking a byte is idle too.
        if c.pending > 0 && now - c.lastSend > options.idleTimeoutNanos { return .idleTimeout }
        if c.loggedIn && !c.closing && c.pending == 0 && now - c.lastSend > 1_000_000_000 {
            SoupBinTCP.append(.serverHeartbeat, to: &c.out)
        }
        if c.pending > 0 {
            let n = c.out.withUnsafeBytes { c.socket.write(UnsafeRawBufferPointer(rebasing: $0[c.outStart...])) }
            guard let n else { c.closing = true; c.out.removeAll(); c.outStart = 0; return nil }
            if n > 0 { c.lastSend = now; c.outStart += n }
            if c.outStart == c.out.count { c.out.removeAll(keepingCapacity: false); c.outStart = 0 }
        }
        return nil
    }

    func handle(_ c: Connection, _ type: UInt8, _ payload: ArraySlice<UInt8>, _ state: ITCHSnapshotState, _ next: UInt64) -> SoupBinTCP.Fault? {
        guard c.loggedIn else {
            guard type == SoupBinTCP.PacketType.loginRequest.rawValue, payload.count == SoupBinTCP.loginRequestPayload else { return .badLogin }
            let p = Array(payload)
            let user = SoupBinTCP.parseAlpha(p[0..<6]), password = SoupBinTCP.parseAlpha(p[6..<16])
            let wantedSession = p[16..<26]
            guard let sequence = SoupBinTCP.parseNumeric(p[26..<46]) else { return .badLogin }
            if let u = options.username, u != user || (options.password ?? "") != password {
                return reject(c, SoupBinTCP.notAuthorized)
            }
            if !wantedSession.allSatisfy({ $0 == 0x20 }) && Array(wantedSession) != session {
                return reject(c, SoupBinTCP.sessionNotAvailable)
            }
            return login(c, from: max(sequence, 1), state, next)
        }
        switch SoupBinTCP.PacketType(rawValue: type) {
        case .clientHeartbeat: return nil
        case .logoutRequest: counts.logouts += 1; c.closing = true; return nil
        case .loginRequest: return .badLogin
        default: return .badType
        }
    }

    func reject(_ c: Connection, _ reason: UInt8) -> SoupBinTCP.Fault? {
        counts.rejectedLogins += 1
        SoupBinTCP.append(.loginRejected, [reason], to: &c.out)
        c.closing = true
        return nil
    }

    /// Accepts the login and queues the whole snapshot from sequence `first` on.
    func login(_ c: Connection, from first: UInt64, _ state: ITCHSnapshotState, _ next: UInt64) -> SoupBinTCP.Fault? {
        counts.logins += 1
        c.loggedIn = true
        SoupBinTCP.append(.loginAccepted, session + SoupBinTCP.numeric(first, SoupBinTCP.sequenceSize), to: &c.out)
        var sequence: UInt64 = 1
        var overflow = false
        var sent = 0
        state.forEachMessage(nextSequence: next) { message in
            defer { sequence += 1 }
            guard sequence >= first, !overflow else { return }
            if c.out.count + 3 + message.count > options.maxOutputBytes { overflow = true; return }
            SoupBinTCP.append(.sequencedData, message, to: &c.out)
            sent += 1
        }
        if overflow { return .outputOverflow }
        counts.snapshots += 1
        counts.messages += sent
        return nil
    }
}
