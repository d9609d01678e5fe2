import CNATS
#if canImport(Glibc)
import Glibc
#endif

/// A libnats failure: the operation, the library's status and its text (and JetStream's own error code, when the
/// server answered with one).
public struct NATSError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The `natsStatus` value (`NATS_OK` is 0; see `<nats/status.h>`).
    public let status: Int32
    public let operation: String
    public let text: String
    /// The JetStream API error code (`jsErrCode`), 0 when there is none.
    public let jetStreamCode: Int

    public init(status: Int32, operation: String, text: String? = nil, jetStreamCode: Int = 0) {
        self.status = status
        self.operation = operation
        self.jetStreamCode = jetStreamCode
        if let text {
            self.text = text
        } else {
            var last = NATS_OK
            let detail = nats_GetLastError(&last).map { String(cString: $0) } ?? ""
            self.text = detail.isEmpty ? String(cString: natsStatus_GetText(natsStatus(rawValue: UInt32(status)))) : detail
        }
    }

    init(_ s: natsStatus, _ operation: String, jetStreamCode: jsErrCode = jsErrCode(rawValue: 0)) {
        self.init(status: Int32(s.rawValue), operation: operation, jetStreamCode: Int(jetStreamCode.rawValue))
    }

    public var description: String {
        jetStreamCode == 0 ? "\(operation): \(text)" : "\(operation): \(text) (JetStream error \(jetStreamCode))"
    }

    /// The request timed out (no answer in time: no quorum, an election, a stalled server).
    public var isTimeout: Bool { status == Int32(NATS_TIMEOUT.rawValue) }
    /// Nothing listens on the subject (a request that found no responder).
    public var isNoResponders: Bool { status == Int32(NATS_NO_RESPONDERS.rawValue) }
    /// No server could be reached.
    public var isNoServer: Bool { status == Int32(NATS_NO_SERVER.rawValue) }
    /// The connection is closed for good.
    public var isClosed: Bool { status == Int32(NATS_CONNECTION_CLOSED.rawValue) }
    /// The server answered that there is no such thing (a JetStream message not in the stream: error 10037).
    public var isNotFound: Bool { status == Int32(NATS_NOT_FOUND.rawValue) || jetStreamCode == 10037 }
}

@inline(__always)
func check(_ s: natsStatus, _ operation: @autoclosure () -> String) throws(NATSError) {
    if s != NATS_OK { throw NATSError(s, operation()) }
}

public enum NATS {
    /// The libnats version this process runs with, such as "3.4.1".
    public static var version: String { String(cString: nats_GetVersion()) }

    /// Checks that the headers this module was built with match the library it runs with. libnats asks for this
    /// once per process (the function-like macro `nats_CheckCompatibility` does not import into Swift).
    public static func checkCompatibility() -> Bool { tw_nats_check_compatibility() }

    /// A server URL list as typed by a user: "nats://h1:4222,nats://h2:4222" (a bare "h:p" gets nats://).
    /// - Throws: a message naming the URL that is not one.
    public static func parseServers(_ text: String) throws(NATSError) -> [String] {
        var urls: [String] = []
        for raw in text.split(separator: ",", omittingEmptySubsequences: false) {
            let item = raw.trimmingCharacters(in: " \t")
            guard !item.isEmpty else {
                throw NATSError(status: Int32(NATS_INVALID_ARG.rawValue), operation: "NATS server list",
                                text: "empty server URL in '\(text)'")
            }
            let url = item.contains("://") ? item : "nats://" + item
            guard url.hasPrefix("nats://") || url.hasPrefix("tls://"),
                  let hostPort = url.split(separator: "/", omittingEmptySubsequences: true).last,
                  let colon = hostPort.lastIndex(of: ":"),
                  let port = Int(hostPort[hostPort.index(after: colon)...]), (1...65535).contains(port),
                  colon > hostPort.startIndex
            else {
                throw NATSError(status: Int32(NATS_INVALID_ARG.rawValue), operation: "NATS server list",
                                text: "'\(item)' is not a NATS URL (nats://HOST:PORT)")
            }
            urls.append(url)
        }
        return urls
    }
}

extension Substring {
    fileprivate func trimmingCharacters(in set: String) -> String {
        var s = self[...]
        while let c = s.first, set.contains(c) { s = s.dropFirst() }
        while let c = s.last, set.contains(c) { s = s.dropLast() }
        return String(s)
    }
}

/// One received message. It is valid only inside the handler it was given to: copy what you keep.
public struct NATSMessage: @unchecked Sendable {
    let handle: OpaquePointer

    public var subject: String { String(cString: natsMsg_GetSubject(handle)) }
    public var reply: String? { natsMsg_GetReply(handle).map { String(cString: $0) } }
    public var count: Int { Int(natsMsg_GetDataLength(handle)) }

    /// The payload, borrowed for the duration of `body`.
    public func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try body(UnsafeRawBufferPointer(start: natsMsg_GetData(handle), count: count))
    }

    public var bytes: [UInt8] { withBytes { Array($0) } }

    /// A header's first value (`Nats-Msg-Id`, …), nil when absent.
    public func header(_ key: String) -> String? {
        var value: UnsafePointer<CChar>? = nil
        guard natsMsgHeader_Get(handle, key, &value) == NATS_OK, let value else { return nil }
        return String(cString: value)
    }

    /// For a message delivered by a JetStream consumer: its sequence in the stream and the time the stream stored it.
    public var streamPosition: (sequence: UInt64, timestampNanos: Int64)? {
        var meta: UnsafeMutablePointer<jsMsgMetaData>? = nil
        guard natsMsg_GetMetaData(&meta, handle) == NATS_OK, let meta else { return nil }
        defer { jsMsgMetaData_Destroy(meta) }
        return (meta.pointee.Sequence.Stream, meta.pointee.Timestamp)
    }
}

/// What happens to a connection, reported on libnats' own callback thread.
public enum NATSConnectionEvent: Sendable, Equatable {
    case disconnected
    /// Connected again, to this server (with `retryOnFailedConnect`, also the first connection made in the
    /// background).
    case reconnected(url: String)
    /// An asynchronous error: a slow consumer (messages dropped at the client's pending limit), a permission denial…
    case error(NATSError)
    /// Closed for good (by `close()`, or reconnection gave up).
    case closed
}

/// A connection to a NATS server or cluster: publish, subscribe, request/reply, and the way into JetStream.
/// Reconnects on its own to any server of the list (forever, unless told otherwise).
public final class NATSConnection: @unchecked Sendable {
    public struct Options: Sendable {
        public var servers: [String]
        /// Shown in the server's monitoring (`/connz`).
        public var name: String = "tickwire"
        /// Flush every publish at once instead of batching in the client (the latency path: ~100 µs p50 here
        /// instead of ~650 µs).
        public var sendAsap: Bool = false
        /// Let one thread publish many messages with one write: between `beginWriteBatch()` and
        /// `endWriteBatch()` its publishes are buffered, and the batch's end writes them all; outside a batch each
        /// publish is written at once (as with `sendAsap`). The connection's socket is then served by a thread of
        /// this module through libnats' event-loop interface (`SocketLoop`), not by libnats' own read and flush
        /// threads.
        public var batchedWrites: Bool = false
        /// Time to establish a connection, per server.
        public var connectTimeoutMs: Int64 = 2_000
        /// Pause between reconnect rounds.
        public var reconnectWaitMs: Int64 = 250
        /// Reconnect attempts per server; -1 is forever.
        public var maxReconnect: Int32 = -1
        /// Keep trying in the background when no server answers at start, instead of failing `init`.
        public var retryOnFailedConnect: Bool = false
        /// Bytes buffered while disconnected (published on reconnect); beyond it a publish fails.
        /// 0 disables buffering: a publish during an outage fails at once, so its loss is counted where it happens.
        public var reconnectBufferBytes: Int32 = 0
        /// Server pings: a dead server is noticed after `pingIntervalMs × maxPingsOut`.
        public var pingIntervalMs: Int64 = 1_000
        public var maxPingsOut: Int32 = 2
        /// The client's per-subscription pending limit (messages); beyond it a slow handler's messages are dropped
        /// and counted (`NATSSubscription.dropped`). -1 is no limit.
        public var maxPendingMessages: Int32 = 65_536
        /// Do not deliver this connection's own publishes to its own subscriptions.
        public var noEcho: Bool = false
        /// Deliver every asynchronous subscription's messages from libnats' shared delivery pool instead of a
        /// thread per subscription (for a process with thousands of subscriptions).
        public var globalMessageDelivery: Bool = false
        /// Called for each connection event on libnats' thread: keep it short.
        public var onEvent: (@Sendable (NATSConnectionEvent) -> Void)? = nil

        public init(servers: [String]) { self.servers = servers }
    }

    let handle: OpaquePointer
    private let events: EventBox
    private let socketLoop: SocketLoop?

    /// Connects (or, with `retryOnFailedConnect`, starts connecting in the background).
    /// - Throws: which servers were tried and why none answered.
    public init(_ options: Options) throws(NATSError) {
        var opts: OpaquePointer? = nil
        try check(natsOptions_Create(&opts), "natsOptions_Create")
        defer { natsOptions_Destroy(opts) }
        let cServers = options.servers.map { strdup($0) }
        defer { cServers.forEach { free($0) } }
        var list = cServers.map { UnsafePointer<CChar>($0) }
        try check(list.withUnsafeMutableBufferPointer {
            natsOptions_SetServers(opts, $0.baseAddress, Int32($0.count))
        }, "NATS servers \(options.servers.joined(separator: ","))")
        try check(natsOptions_SetName(opts, options.name), "natsOptions_SetName")
        // Batched writes need a write asked for at each publish (without a flusher thread, a connection on an event
        // loop that is not sendAsap writes only when its buffer is full).
        try check(natsOptions_SetSendAsap(opts, options.sendAsap || options.batchedWrites), "natsOptions_SetSendAsap")
        try check(natsOptions_SetTimeout(opts, options.connectTimeoutMs), "natsOptions_SetTimeout")
        try check(natsOptions_SetReconnectWait(opts, options.reconnectWaitMs), "natsOptions_SetReconnectWait")
        try check(natsOptions_SetMaxReconnect(opts, options.maxReconnect), "natsOptions_SetMaxReconnect")
        try check(natsOptions_SetReconnectBufSize(opts, options.reconnectBufferBytes), "natsOptions_SetReconnectBufSize")
        try check(natsOptions_SetPingInterval(opts, options.pingIntervalMs), "natsOptions_SetPingInterval")
        try check(natsOptions_SetMaxPingsOut(opts, options.maxPingsOut), "natsOptions_SetMaxPingsOut")
        try check(natsOptions_SetNoEcho(opts, options.noEcho), "natsOptions_SetNoEcho")
        if options.globalMessageDelivery {
            try check(natsOptions_UseGlobalMessageDelivery(opts, true), "natsOptions_UseGlobalMessageDelivery")
        }
        if options.maxPendingMessages > 0 {
            try check(natsOptions_SetMaxPendingMsgs(opts, options.maxPendingMessages), "natsOptions_SetMaxPendingMsgs")
        }
        // The box lives until the closed callback, the last one libnats makes for a connection.
        let box = EventBox(options.onEvent)
        let ctx = Unmanaged.passRetained(box).toOpaque()
        try check(natsOptions_SetDisconnectedCB(opts, { _, ctx in
            EventBox.from(ctx).send(.disconnected)
        }, ctx), "natsOptions_SetDisconnectedCB")
        try check(natsOptions_SetReconnectedCB(opts, { nc, ctx in
            var url = [CChar](repeating: 0, count: 256)
            _ = natsConnection_GetConnectedUrl(nc, &url, url.count)
            EventBox.from(ctx).send(.reconnected(url: String(cString: url)))
        }, ctx), "natsOptions_SetReconnectedCB")
        try check(natsOptions_SetErrorHandler(opts, { _, _, status, ctx in
            EventBox.from(ctx).send(.error(NATSError(status, "asynchronous error")))
        }, ctx), "natsOptions_SetErrorHandler")
        try check(natsOptions_SetClosedCB(opts, { _, ctx in
            let box = Unmanaged<EventBox>.fromOpaque(ctx!)
            box.takeUnretainedValue().send(.closed)
            box.release()
        }, ctx), "natsOptions_SetClosedCB")
        if options.retryOnFailedConnect {
            // With a connected callback libnats returns at once and connects in the background; without one,
            // natsConnection_Connect blocks, retrying until it connects (forever with maxReconnect -1).
            try check(natsOptions_SetRetryOnFailedConnect(opts, true, { nc, ctx in
                var url = [CChar](repeating: 0, count: 256)
                _ = natsConnection_GetConnectedUrl(nc, &url, url.count)
                EventBox.from(ctx).send(.reconnected(url: String(cString: url)))
            }, ctx), "natsOptions_SetRetryOnFailedConnect")
        }
        let loop: SocketLoop?
        do {
            loop = options.batchedWrites ? try SocketLoop(installingOn: opts) : nil
        } catch {
            Unmanaged<EventBox>.fromOpaque(ctx).release()
            throw error
        }
        var nc: OpaquePointer? = nil
        let s = natsConnection_Connect(&nc, opts)
        guard s == NATS_OK || (options.retryOnFailedConnect && s == NATS_NOT_YET_CONNECTED), let nc else {
            let error = NATSError(status: Int32(s.rawValue), operation: "connect to \(options.servers.joined(separator: ","))")
            loop?.stop()
            Unmanaged<EventBox>.fromOpaque(ctx).release()
            throw error
        }
        handle = nc
        events = box
        socketLoop = loop
    }

    deinit {
        natsConnection_Close(handle)
        socketLoop?.stop()   // it may be inside libnats with this connection
        natsConnection_Destroy(handle)
    }

    /// Closes the connection: pending publishes are flushed on a best-effort basis, subscriptions end.
    public func close() { natsConnection_Close(handle) }

    public var isConnected: Bool { natsConnection_Status(handle) == NATS_CONN_STATUS_CONNECTED }
    public var isClosed: Bool { natsConnection_IsClosed(handle) }

    /// The server this connection is on now, empty when none.
    public var connectedURL: String {
        var url = [CChar](repeating: 0, count: 256)
        guard natsConnection_GetConnectedUrl(handle, &url, url.count) == NATS_OK else { return "" }
        return String(cString: url)
    }

    /// Messages and bytes in and out, and reconnections, since the connection was made.
    public func statistics() -> (inMessages: UInt64, outMessages: UInt64, outBytes: UInt64, reconnects: UInt64) {
        var stats: OpaquePointer? = nil
        guard natsStatistics_Create(&stats) == NATS_OK else { return (0, 0, 0, 0) }
        defer { natsStatistics_Destroy(stats) }
        _ = natsConnection_GetStats(handle, stats)
        var inMsgs: UInt64 = 0, inBytes: UInt64 = 0, outMsgs: UInt64 = 0, outBytes: UInt64 = 0, reconnects: UInt64 = 0
        _ = natsStatistics_GetCounts(stats, &inMsgs, &inBytes, &outMsgs, &outBytes, &reconnects)
        return (inMsgs, outMsgs, outBytes, reconnects)
    }

    // MARK: Publish

    /// Publishes `bytes` to `subject` (a C string, so a hot path can keep its subjects converted once).
    public func publish(subject: UnsafePointer<CChar>, bytes: UnsafeRawBufferPointer) throws(NATSError) {
        let s = natsConnection_Publish(handle, subject, bytes.baseAddress, Int32(bytes.count))
        if s != NATS_OK { throw NATSError(s, "publish to \(String(cString: subject))") }
    }

    /// Publishes without building an error: for a hot path that counts failures instead of reporting each one
    /// (while disconnected with `reconnectBufferBytes` 0 every publish fails at once).
    /// - Returns: true when the client library took the message.
    /// The corresponding C function is `natsConnection_Publish`.
    @inline(__always)
    public func tryPublish(subject: UnsafePointer<CChar>, bytes: UnsafeRawBufferPointer) -> Bool {
        natsConnection_Publish(handle, subject, bytes.baseAddress, Int32(bytes.count)) == NATS_OK
    }

    /// With `batchedWrites`: this thread's publishes from now on are buffered until `endWriteBatch()` (other
    /// threads' are not). Without, nothing changes.
    public func beginWriteBatch() { socketLoop?.beginBatch() }

    /// Writes what this thread published since `beginWriteBatch()`, all at once; while the socket is full it
    /// waits, as a publish with `sendAsap` does.
    public func endWriteBatch() { socketLoop?.endBatch(handle) }

    public func publish(subject: String, bytes: [UInt8], reply: String? = nil) throws(NATSError) {
        let s = bytes.withUnsafeBytes { buf in
            reply.map { natsConnection_PublishRequest(handle, subject, $0, buf.baseAddress, Int32(buf.count)) }
                ?? natsConnection_Publish(handle, subject, buf.baseAddress, Int32(buf.count))
        }
        if s != NATS_OK { throw NATSError(s, "publish to \(subject)") }
    }

    /// Sends what the client buffered and waits until the server has processed it (a round trip).
    public func flush(timeoutMs: Int64 = 5_000) throws(NATSError) {
        try check(natsConnection_FlushTimeout(handle, timeoutMs), "flush")
    }

    // MARK: Subscribe, request

    /// Subscribes to `subject` (with `*` and `>` wildcards), optionally in a queue group. `handler` runs on the
    /// subscription's own delivery thread, one message at a time, in order.
    public func subscribe(_ subject: String, queue: String? = nil, pendingLimit: Int32? = nil,
                          handler: @escaping @Sendable (NATSMessage) -> Void) throws(NATSError) -> NATSSubscription {
        let box = HandlerBox(handler)
        let ctx = Unmanaged.passRetained(box).toOpaque()
        var sub: OpaquePointer? = nil
        let callback: natsMsgHandler = { _, _, msg, ctx in
            guard let msg else { return }
            Unmanaged<HandlerBox>.fromOpaque(ctx!).takeUnretainedValue().handler(NATSMessage(handle: msg))
            natsMsg_Destroy(msg)
        }
        let s = queue.map { natsConnection_QueueSubscribe(&sub, handle, subject, $0, callback, ctx) }
            ?? natsConnection_Subscribe(&sub, handle, subject, callback, ctx)
        guard s == NATS_OK, let sub else {
            Unmanaged<HandlerBox>.fromOpaque(ctx).release()
            throw NATSError(s, "subscribe to \(subject)")
        }
        return try NATSSubscription(sub, context: ctx, pendingLimit: pendingLimit, subject: subject)
    }

    /// Sends a request and waits for one reply, copied out.
    /// - Throws: `isTimeout` when nothing answered in time, `isNoResponders` when nobody listens.
    public func request(_ subject: String, bytes: [UInt8], timeoutMs: Int64) throws(NATSError) -> [UInt8] {
        var reply: OpaquePointer? = nil
        let s = bytes.withUnsafeBytes {
            natsConnection_Request(&reply, handle, subject, $0.baseAddress, Int32($0.count), timeoutMs)
        }
        guard s == NATS_OK, let reply else { throw NATSError(s, "request on \(subject)") }
        defer { natsMsg_Destroy(reply) }
        return NATSMessage(handle: reply).bytes
    }

    /// JetStream on this connection.
    public func jetStream(_ options: JetStream.Options = .init()) throws(NATSError) -> JetStream {
        try JetStream(connection: self, options: options)
    }
}

/// A live subscription. It ends when `unsubscribe()` is called or the connection closes.
public final class NATSSubscription: @unchecked Sendable {
    let handle: OpaquePointer
    public let subject: String

    init(_ handle: OpaquePointer, context: UnsafeMutableRawPointer, pendingLimit: Int32?, subject: String) throws(NATSError) {
        self.handle = handle
        self.subject = subject
        // The handler box is released when libnats says no more messages will come for this subscription.
        let s = natsSubscription_SetOnCompleteCB(handle, { ctx in
            Unmanaged<HandlerBox>.fromOpaque(ctx!).release()
        }, context)
        if s != NATS_OK { throw NATSError(s, "natsSubscription_SetOnCompleteCB") }
        if let pendingLimit {
            try check(natsSubscription_SetPendingLimits(handle, pendingLimit, -1), "natsSubscription_SetPendingLimits")
        }
    }

    deinit { natsSubscription_Destroy(handle) }

    public func unsubscribe() { _ = natsSubscription_Unsubscribe(handle) }

    /// Messages the client library dropped because the handler fell behind its pending limit.
    public var dropped: Int64 {
        var n: Int64 = 0
        _ = natsSubscription_GetDropped(handle, &n)
        return n
    }

    /// Messages waiting for the handler now.
    public var pending: Int32 {
        var msgs: Int32 = 0, bytes: Int32 = 0
        _ = natsSubscription_GetPending(handle, &msgs, &bytes)
        return msgs
    }
}

final class HandlerBox {
    let handler: @Sendable (NATSMessage) -> Void
    init(_ handler: @escaping @Sendable (NATSMessage) -> Void) { self.handler = handler }
}

final class EventBox {
    let onEvent: (@Sendable (NATSConnectionEvent) -> Void)?
    init(_ onEvent: (@Sendable (NATSConnectionEvent) -> Void)?) { self.onEvent = onEvent }
    func send(_ event: NATSConnectionEvent) { onEvent?(event) }
    static func from(_ ctx: UnsafeMutableRawPointer?) -> EventBox {
        Unmanaged<EventBox>.fromOpaque(ctx!).takeUnretainedValue()
    }
}

// MARK: - Synchronous subscriptions (additions for issue 14)

extension NATSConnection {
    /// Subscribes to `subject` for reading on the caller's own thread with `NATSSyncSubscription.next`: a source
    /// that must hand what it reads to a single-writer sink from its own thread, batching what is already waiting.
    /// The corresponding C function is `natsConnection_SubscribeSync`.
    public func subscribeSync(_ subject: String, pendingLimit: Int32? = nil) throws(NATSError) -> NATSSyncSubscription {
        var sub: OpaquePointer? = nil
        let s = natsConnection_SubscribeSync(&sub, handle, subject)
        guard s == NATS_OK, let sub else { throw NATSError(s, "subscribe to \(subject)") }
        let subscription = NATSSyncSubscription(sub, subject: subject)
        if let pendingLimit {
            try check(natsSubscription_SetPendingLimits(sub, pendingLimit, -1), "natsSubscription_SetPendingLimits")
        }
        return subscription
    }
}

/// A subscription read with `next` on one thread.
public final class NATSSyncSubscription: @unchecked Sendable {
    let handle: OpaquePointer
    public let subject: String

    init(_ handle: OpaquePointer, subject: String) { self.handle = handle; self.subject = subject }

    deinit { natsSubscription_Destroy(handle) }

    public func unsubscribe() { _ = natsSubscription_Unsubscribe(handle) }

    /// Hands the next message to `body`, waiting at most `timeoutMs` (0: only one already waiting).
    /// - Returns: `body`'s result, or nil when no message came in time (or the subscription ended).
    /// - warning: the message is valid only inside `body`.
    /// The corresponding C function is `natsSubscription_NextMsg`.
    public func next<R>(timeoutMs: Int64, _ body: (NATSMessage) -> R) -> R? {
        var msg: OpaquePointer? = nil
        guard natsSubscription_NextMsg(&msg, handle, timeoutMs) == NATS_OK, let msg else { return nil }
        defer { natsMsg_Destroy(msg) }
        return body(NATSMessage(handle: msg))
    }

    /// Messages the client library dropped because the reader fell behind its pending limit.
    public var dropped: Int64 {
        var n: Int64 = 0
        _ = natsSubscription_GetDropped(handle, &n)
        return n
    }

    /// False once the subscription ended (unsubscribed, or the connection closed).
    public var isValid: Bool { natsSubscription_IsValid(handle) }
}

extension NATSMessage {
    /// The subject's bytes (no terminator), borrowed for the duration of `body`: no String per message.
    /// - warning: the pointer is valid only inside `body`.
    public func withSubjectBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        let p = natsMsg_GetSubject(handle)!
        return try body(UnsafeRawBufferPointer(start: p, count: strlen(p)))
    }
}
