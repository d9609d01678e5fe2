import CZeroMQ
#if canImport(Glibc)
import Glibc
#endif

/// A libzmq failure: the operation, errno, and `zmq_strerror`'s text.
public struct ZMQError: Error, CustomStringConvertible, Sendable, Equatable {
    public let code: Int32
    public let operation: String
    public let text: String

    public init(code: Int32, operation: String) {
        self.code = code
        self.operation = operation
        self.text = String(cString: zmq_strerror(code))
    }

    /// Reads errno as libzmq left it.
    static func last(_ operation: String) -> ZMQError { ZMQError(code: zmq_errno(), operation: operation) }

    public var description: String { "\(operation): \(text)" }
    /// The call was interrupted by a signal (EINTR): retry or check for shutdown.
    public var isInterrupted: Bool { code == EINTR }
    /// The context was terminated (ETERM): the socket must be closed.
    public var isTerminated: Bool { code == ETERM_VALUE }
    /// A non-blocking call would have blocked.
    public var wouldBlock: Bool { code == EAGAIN }
    /// The address is taken by another process (EADDRINUSE).
    public var addressInUse: Bool { code == EADDRINUSE }
}

// ETERM is defined by zmq.h as a macro of an expression Swift can't import on every libzmq version.
/// Text from a NUL-terminated C buffer.
func cString(_ chars: [CChar]) -> String {
    String(decoding: chars.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

let ETERM_VALUE: Int32 = 156384712 + 53

public enum ZMQ {
    /// libzmq's version, such as (4, 3, 4).
    public static var version: (major: Int, minor: Int, patch: Int) {
        var a: Int32 = 0, b: Int32 = 0, c: Int32 = 0
        zmq_version(&a, &b, &c)
        return (Int(a), Int(b), Int(c))
    }

    /// Whether libzmq was built with a capability (`"curve"`, `"ipc"`). The corresponding C function is `zmq_has`.
    public static func has(_ capability: String) -> Bool { zmq_has(capability) != 0 }

    /// A new CURVE key pair as Z85 text (40 characters each). The corresponding C function is `zmq_curve_keypair`.
    public static func curveKeyPair() throws(ZMQError) -> (publicKey: String, secretKey: String) {
        var pub = [CChar](repeating: 0, count: 41), sec = [CChar](repeating: 0, count: 41)
        guard zmq_curve_keypair(&pub, &sec) == 0 else { throw ZMQError.last("zmq_curve_keypair") }
        return (cString(pub), cString(sec))
    }

    /// The public key that belongs to a Z85 secret key. The corresponding C function is `zmq_curve_public`.
    public static func curvePublic(secretKey: String) throws(ZMQError) -> String {
        var pub = [CChar](repeating: 0, count: 41)
        guard secretKey.utf8.count == 40, zmq_curve_public(&pub, secretKey) == 0 else {
            throw ZMQError(code: EINVAL, operation: "zmq_curve_public")
        }
        return cString(pub)
    }

    /// Runs a forwarder between two sockets until the context ends. The corresponding C function is `zmq_proxy`.
    public static func proxy(frontend: ZMQSocket, backend: ZMQSocket) throws(ZMQError) {
        if zmq_proxy(frontend.handle, backend.handle, nil) != 0 { throw ZMQError.last("zmq_proxy") }
    }

    public struct PollEvents: OptionSet, Sendable {
        public let rawValue: Int16
        public init(rawValue: Int16) { self.rawValue = rawValue }
        public static let readable = PollEvents(rawValue: Int16(ZMQ_POLLIN))
        public static let writable = PollEvents(rawValue: Int16(ZMQ_POLLOUT))
    }

    /// Waits until one of the sockets is ready, at most `timeoutMs` (-1: forever).
    /// - Returns: the ready events per socket, in order.
    /// - Throws: `ZMQError` (EINTR when a signal arrived). The corresponding C function is `zmq_poll`.
    public static func poll(_ items: [(ZMQSocket, PollEvents)], timeoutMs: Int) throws(ZMQError) -> [PollEvents] {
        var raw = items.map { zmq_pollitem_t(socket: $0.0.handle, fd: 0, events: $0.1.rawValue, revents: 0) }
        let rc = zmq_poll(&raw, Int32(raw.count), timeoutMs)
        if rc < 0 { throw ZMQError.last("zmq_poll") }
        return raw.map { PollEvents(rawValue: $0.revents) }
    }
}

/// A libzmq context. Owns the I/O threads; sockets keep it alive until the last is closed.
public final class ZMQContext: @unchecked Sendable {
    let handle: UnsafeMutableRawPointer

    /// - Parameter ioThreads: libzmq I/O threads (1 moves over a million small messages a second).
    public init(ioThreads: Int = 1) {
        handle = zmq_ctx_new()!
        zmq_ctx_set(handle, ZMQ_IO_THREADS, Int32(ioThreads))
        // Sockets are closed by their owners with linger already set; never block forever on exit.
        zmq_ctx_set(handle, ZMQ_BLOCKY, 0)
    }

    deinit { zmq_ctx_term(handle) }

    /// Makes a socket owned by the caller. - Throws: `ZMQError`.
    public func socket(_ type: ZMQSocket.Kind) throws(ZMQError) -> ZMQSocket {
        guard let s = zmq_socket(handle, type.rawValue) else { throw ZMQError.last("zmq_socket") }
        return ZMQSocket(handle: s, context: self)
    }

    /// Unblocks every blocking call on this context's sockets with ETERM (used for shutdown).
    public func shutdown() { zmq_ctx_shutdown(handle) }
}

/// One ZeroMQ socket, closed when its owner lets it go. A socket is used by one thread at a time.
public final class ZMQSocket: @unchecked Sendable {
    public enum Kind: Int32, Sendable {
        case pair = 0, pub = 1, sub = 2, req = 3, rep = 4, dealer = 5, router = 6, pull = 7, push = 8
        case xpub = 9, xsub = 10
    }

    let handle: UnsafeMutableRawPointer
    private let context: ZMQContext
    private var closed = false

    init(handle: UnsafeMutableRawPointer, context: ZMQContext) {
        self.handle = handle
        self.context = context
        // No socket should hold the process at exit for queued messages unless asked to.
        _ = tw_zmq_setsockopt_int(handle, ZMQ_LINGER, 0)
    }

    deinit { close() }

    /// Closes now rather than at deinit. The corresponding C function is `zmq_close`.
    public func close() {
        if !closed { zmq_close(handle); closed = true }
    }

    // MARK: Endpoints

    /// - Throws: `ZMQError` naming the endpoint (EADDRINUSE when another process holds it).
    public func bind(_ endpoint: String) throws(ZMQError) {
        if zmq_bind(handle, endpoint) != 0 { throw ZMQError.last("bind \(endpoint)") }
    }

    public func connect(_ endpoint: String) throws(ZMQError) {
        if zmq_connect(handle, endpoint) != 0 { throw ZMQError.last("connect \(endpoint)") }
    }

    public func unbind(_ endpoint: String) throws(ZMQError) {
        if zmq_unbind(handle, endpoint) != 0 { throw ZMQError.last("unbind \(endpoint)") }
    }

    public func disconnect(_ endpoint: String) throws(ZMQError) {
        if zmq_disconnect(handle, endpoint) != 0 { throw ZMQError.last("disconnect \(endpoint)") }
    }

    /// The endpoint last bound, with a wildcard port resolved (`tcp://127.0.0.1:*` -> `tcp://127.0.0.1:41234`).
    public var lastEndpoint: String {
        var buf = [CChar](repeating: 0, count: 256)
        var size = buf.count
        zmq_getsockopt(handle, ZMQ_LAST_ENDPOINT, &buf, &size)
        return cString(buf)
    }

    // MARK: Options

    public func setOption(_ option: Int32, _ value: Int32) throws(ZMQError) {
        if tw_zmq_setsockopt_int(handle, option, value) != 0 { throw ZMQError.last("zmq_setsockopt(\(option))") }
    }

    public func setOption(_ option: Int32, bytes: [UInt8]) throws(ZMQError) {
        let rc = bytes.withUnsafeBytes { zmq_setsockopt(handle, option, $0.baseAddress, $0.count) }
        if rc != 0 { throw ZMQError.last("zmq_setsockopt(\(option))") }
    }

    public func intOption(_ option: Int32) throws(ZMQError) -> Int32 {
        var v: Int32 = 0
        if tw_zmq_getsockopt_int(handle, option, &v) != 0 { throw ZMQError.last("zmq_getsockopt(\(option))") }
        return v
    }

    /// The largest frame a peer may send; a peer that sends a larger one is disconnected (-1: no limit).
    public func setMaximumMessageSize(_ bytes: Int64) throws(ZMQError) {
        var v = bytes
        if zmq_setsockopt(handle, ZMQ_MAXMSGSIZE, &v, MemoryLayout<Int64>.size) != 0 { throw ZMQError.last("zmq_setsockopt(ZMQ_MAXMSGSIZE)") }
    }

    /// Messages queued per peer before a PUB drops (or other types block). 0 means no limit.
    public func setSendHighWaterMark(_ n: Int) throws(ZMQError) { try setOption(ZMQ_SNDHWM, Int32(n)) }
    public func setReceiveHighWaterMark(_ n: Int) throws(ZMQError) { try setOption(ZMQ_RCVHWM, Int32(n)) }
    /// The kernel's receive buffer (SO_RCVBUF) for this socket's connections made from now on (0: the OS default).
    public func setReceiveBufferBytes(_ n: Int) throws(ZMQError) { try setOption(ZMQ_RCVBUF, Int32(n)) }
    /// Milliseconds pending messages are kept after close (0: dropped at once).
    public func setLinger(milliseconds: Int) throws(ZMQError) { try setOption(ZMQ_LINGER, Int32(milliseconds)) }
    /// Blocking receive gives up after this many ms with EAGAIN (-1: never).
    public func setReceiveTimeout(milliseconds: Int) throws(ZMQError) { try setOption(ZMQ_RCVTIMEO, Int32(milliseconds)) }
    public func setSendTimeout(milliseconds: Int) throws(ZMQError) { try setOption(ZMQ_SNDTIMEO, Int32(milliseconds)) }
    /// SUB: receive messages whose first frame starts with `prefix` (empty: everything).
    public func subscribe(_ prefix: String) throws(ZMQError) { try setOption(ZMQ_SUBSCRIBE, bytes: Array(prefix.utf8)) }
    public func unsubscribe(_ prefix: String) throws(ZMQError) { try setOption(ZMQ_UNSUBSCRIBE, bytes: Array(prefix.utf8)) }
    /// ROUTER: fail a send to an unknown peer rather than dropping it silently.
    public func setRouterMandatory(_ on: Bool) throws(ZMQError) { try setOption(ZMQ_ROUTER_MANDATORY, on ? 1 : 0) }
    public func setRoutingID(_ id: [UInt8]) throws(ZMQError) { try setOption(ZMQ_ROUTING_ID, bytes: id) }
    /// XPUB: pass every subscription message upstream, duplicates included.
    public func setXPubVerbose(_ on: Bool) throws(ZMQError) { try setOption(ZMQ_XPUB_VERBOSE, on ? 1 : 0) }
    /// Queue only to completed connections.
    public func setImmediate(_ on: Bool) throws(ZMQError) { try setOption(ZMQ_IMMEDIATE, on ? 1 : 0) }

    // CURVE security (keys as 40-character Z85 text).
    public func setCurveServer(secretKey: String) throws(ZMQError) {
        try setOption(ZMQ_CURVE_SERVER, 1)
        try setOption(ZMQ_CURVE_SECRETKEY, bytes: Array(secretKey.utf8))
    }
    public func setCurveClient(serverKey: String, publicKey: String, secretKey: String) throws(ZMQError) {
        try setOption(ZMQ_CURVE_SERVERKEY, bytes: Array(serverKey.utf8))
        try setOption(ZMQ_CURVE_PUBLICKEY, bytes: Array(publicKey.utf8))
        try setOption(ZMQ_CURVE_SECRETKEY, bytes: Array(secretKey.utf8))
    }
    /// The ZAP domain a server socket authenticates in; a ZAP handler must be bound at inproc://zeromq.zap.01.
    public func setZapDomain(_ domain: String) throws(ZMQError) { try setOption(ZMQ_ZAP_DOMAIN, bytes: Array(domain.utf8)) }

    // MARK: Monitoring

    /// Reports this socket's connection events (`ZMQMonitorEvent.Kind` bits in `events`) as two-frame messages
    /// on a PAIR socket that libzmq binds at `endpoint` (an `inproc://` name); nil stops reporting. Call it from
    /// the thread that uses this socket. The corresponding C function is `zmq_socket_monitor`.
    /// - warning: libzmq's I/O thread blocks on a monitor whose PAIR stops reading: keep reading until
    ///   reporting is stopped.
    public func monitor(_ endpoint: String?, events: ZMQMonitorEvent.Kind) throws(ZMQError) {
        if zmq_socket_monitor(handle, endpoint, events.rawValue) != 0 { throw ZMQError.last("zmq_socket_monitor") }
    }

    /// Whether the last frame received has more frames after it.
    public var hasMore: Bool { (try? intOption(ZMQ_RCVMORE)) == 1 }

    /// Waits until a message can be received, at most `timeoutMs` (-1: forever), allocating nothing (a receive
    /// loop calls it each time it runs dry). `ZMQ.poll` waits on several sockets.
    /// - Returns: whether one can be received now.
    /// - Throws: `ZMQError` (EINTR when a signal arrived). The corresponding C function is `zmq_poll`.
    public func waitReadable(timeoutMs: Int) throws(ZMQError) -> Bool {
        var item = zmq_pollitem_t(socket: handle, fd: 0, events: Int16(ZMQ_POLLIN), revents: 0)
        let rc = zmq_poll(&item, 1, timeoutMs)
        if rc < 0 { throw ZMQError.last("zmq_poll") }
        return item.revents & Int16(ZMQ_POLLIN) != 0
    }

    /// Waits until a message can be received or `fd` (a plain descriptor: standard input, say) is readable, at
    /// most `timeoutMs` (-1: forever). - Returns: which of the two is ready. - Throws: `ZMQError` (EINTR when a
    /// signal arrived).
    public func waitReadable(orFD fd: Int32, timeoutMs: Int) throws(ZMQError) -> (socket: Bool, fd: Bool) {
        var items = (zmq_pollitem_t(socket: handle, fd: 0, events: Int16(ZMQ_POLLIN), revents: 0),
                     zmq_pollitem_t(socket: nil, fd: fd, events: Int16(ZMQ_POLLIN), revents: 0))
        let rc = withUnsafeMutableBytes(of: &items) { zmq_poll($0.baseAddress!.assumingMemoryBound(to: zmq_pollitem_t.self), 2, timeoutMs) }
        if rc < 0 { throw ZMQError.last("zmq_poll") }
        // A descriptor at its end or in error is "readable" too: the read that follows finds out which.
        let ready = Int16(ZMQ_POLLIN | ZMQ_POLLERR)
        return (items.0.revents & Int16(ZMQ_POLLIN) != 0, items.1.revents & ready != 0)
    }

    // MARK: Sending

    /// Sends one frame from raw bytes.
    /// - Returns: false when `dontWait` is set and the socket would block (a PUB at its high-water mark drops
    ///   silently instead and returns true).
    /// - Throws: `ZMQError`.
    @discardableResult
    public func send(_ bytes: UnsafeRawBufferPointer, more: Bool = false, dontWait: Bool = false) throws(ZMQError) -> Bool {
        let flags = (more ? ZMQ_SNDMORE : 0) | (dontWait ? ZMQ_DONTWAIT : 0)
        while true {
            if zmq_send(handle, bytes.baseAddress, bytes.count, flags) >= 0 { return true }
            let e = zmq_errno()
            if e == EINTR { continue }
            if e == EAGAIN && dontWait { return false }
            throw ZMQError(code: e, operation: "zmq_send")
        }
    }

    @discardableResult
    public func send(_ bytes: [UInt8], more: Bool = false, dontWait: Bool = false) throws(ZMQError) -> Bool {
        // A typed-throws closure here crashes Swift 6.3's SILGen; carry the outcome out in a Result.
        let r: Result<Bool, ZMQError> = bytes.withUnsafeBytes { p in
            do { return .success(try send(p, more: more, dontWait: dontWait)) } catch { return .failure(error as! ZMQError) }
        }
        return try r.get()
    }

    @discardableResult
    public func send(_ text: String, more: Bool = false, dontWait: Bool = false) throws(ZMQError) -> Bool {
        try send(Array(text.utf8), more: more, dontWait: dontWait)
    }

    /// Sends all frames as one message.
    @discardableResult
    public func sendMultipart(_ frames: [[UInt8]], dontWait: Bool = false) throws(ZMQError) -> Bool {
        for (i, f) in frames.enumerated() {
            let ok = try send(f, more: i < frames.count - 1, dontWait: dontWait)
            if !ok { return false }   // EAGAIN can only happen on the first frame of a message
        }
        return true
    }

    // MARK: Receiving

    /// Receives one frame.
    /// - Returns: nil when `dontWait` is set (or a receive timeout passed) and nothing was waiting.
    /// - Throws: `ZMQError` (EINTR when a signal interrupted a blocking wait, ETERM on shutdown).
    public func receive(dontWait: Bool = false) throws(ZMQError) -> [UInt8]? {
        var msg = ZMQMessage()
        guard try msg.receive(from: self, dontWait: dontWait) else { return nil }
        return msg.bytes
    }

    /// Receives every frame of the next message.
    public func receiveMultipart(dontWait: Bool = false) throws(ZMQError) -> [[UInt8]]? {
        guard let first = try receive(dontWait: dontWait) else { return nil }
        var frames = [first]
        while hasMore {
            guard let next = try receive() else { break }
            frames.append(next)
        }
        return frames
    }
}

/// A received frame held in libzmq's buffer (no copy until asked), closed at deinit.
public struct ZMQMessage: ~Copyable {
    // Heap-held: libzmq does not promise a zmq_msg_t survives being moved bitwise.
    let msg: UnsafeMutablePointer<zmq_msg_t>

    public init() {
        msg = .allocate(capacity: 1)
        zmq_msg_init(msg)
    }

    deinit {
        zmq_msg_close(msg)
        msg.deallocate()
    }

    /// - Returns: false when it would block (`dontWait` or a receive timeout).
    public mutating func receive(from socket: ZMQSocket, dontWait: Bool = false) throws(ZMQError) -> Bool {
        if zmq_msg_recv(msg, socket.handle, dontWait ? ZMQ_DONTWAIT : 0) >= 0 { return true }
        let e = zmq_errno()
        if e == EAGAIN { return false }
        throw ZMQError(code: e, operation: "zmq_msg_recv")
    }

    public var count: Int { zmq_msg_size(msg) }
    public var more: Bool { zmq_msg_more(msg) != 0 }

    /// A metadata property of a received message: `"User-Id"` (set by the ZAP handler that admitted the peer),
    /// `"Peer-Address"`, `"Socket-Type"`; nil when absent. The corresponding C function is `zmq_msg_gets`.
    public func metadata(_ property: String) -> String? {
        guard let value = zmq_msg_gets(msg, property) else { return nil }
        return String(cString: value)
    }

    /// The frame's bytes. - warning: the pointer is valid only inside `body`.
    public mutating func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try body(UnsafeRawBufferPointer(start: zmq_msg_data(msg), count: zmq_msg_size(msg)))
    }

    /// The frame's bytes, to change in place before sending the frame on. - warning: valid only inside `body`.
    public mutating func withUnsafeMutableBytes<R>(_ body: (UnsafeMutableRawBufferPointer) throws -> R) rethrows -> R {
        try body(UnsafeMutableRawBufferPointer(start: zmq_msg_data(msg), count: zmq_msg_size(msg)))
    }

    /// Sends this frame without copying its bytes (`zmq_msg_send`); the message is empty afterwards.
    /// - Returns: false when it would block (`dontWait`).
    @discardableResult
    public mutating func send(on socket: ZMQSocket, more: Bool = false, dontWait: Bool = false) throws(ZMQError) -> Bool {
        if zmq_msg_send(msg, socket.handle, (more ? ZMQ_SNDMORE : 0) | (dontWait ? ZMQ_DONTWAIT : 0)) >= 0 { return true }
        let e = zmq_errno()
        if e == EAGAIN { return false }
        throw ZMQError(code: e, operation: "zmq_msg_send")
    }

    public var bytes: [UInt8] {
        mutating get { withUnsafeBytes { Array($0) } }
    }
}

/// One event of `ZMQSocket.monitor`: what happened, its value (a descriptor for `accepted` and
/// `disconnected`), and the endpoint it concerns.
public struct ZMQMonitorEvent: Sendable, Equatable {
    public struct Kind: OptionSet, Sendable {
        public let rawValue: Int32
        public init(rawValue: Int32) { self.rawValue = rawValue }
        public static let accepted = Kind(rawValue: ZMQ_EVENT_ACCEPTED)
        public static let disconnected = Kind(rawValue: ZMQ_EVENT_DISCONNECTED)
        public static let handshakeSucceeded = Kind(rawValue: ZMQ_EVENT_HANDSHAKE_SUCCEEDED)
    }

    public let kind: Kind
    public let value: UInt32
    public let endpoint: String

    public init(kind: Kind, value: UInt32, endpoint: String) { self.kind = kind; self.value = value; self.endpoint = endpoint }

    /// Receives the next event from the PAIR socket connected to a monitor's endpoint.
    /// - Returns: nil when `dontWait` is set and none is waiting.
    /// - Throws: `ZMQError`, and EPROTO for a message that is not a version-1 event (6 bytes, then the endpoint).
    public static func receive(from pair: ZMQSocket, dontWait: Bool = false) throws(ZMQError) -> ZMQMonitorEvent? {
        guard let frames = try pair.receiveMultipart(dontWait: dontWait) else { return nil }
        guard frames.count == 2, frames[0].count == 6 else { throw ZMQError(code: EPROTO, operation: "monitor event") }
        let f = frames[0]
        let kind = Int32(f[0]) | Int32(f[1]) << 8
        let value = UInt32(f[2]) | UInt32(f[3]) << 8 | UInt32(f[4]) << 16 | UInt32(f[5]) << 24
        return ZMQMonitorEvent(kind: Kind(rawValue: kind), value: value, endpoint: String(decoding: frames[1], as: UTF8.self))
    }
}
