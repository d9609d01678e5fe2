import Foundation
import TickwireCore
import TickwireNATS
import TickwireZMQ

/// Where a subscriber's messages come from: the daemon's ZeroMQ PUB socket, or a NATS cluster. Both hand over
/// the same two parts — subject, 72-byte payload (docs/PROTOCOL.md) — so decoding, pattern matching and gap
/// detection are the `Subscriber`'s alone and read alike whatever the transport.
protocol SubscriberTransport: AnyObject {
    /// The next message's parts (two for a well-formed one), waiting at most `timeoutMs` (0: do not wait,
    /// -1: forever). - Returns: nil when nothing arrived in time.
    func receive(timeoutMs: Int) throws(ZMQError) -> [[UInt8]]?
    /// Messages the transport dropped in this process before the subscriber read them (the NATS client's pending
    /// limit); ZeroMQ's receive queue drops are not counted by libzmq and show only as gaps.
    var droppedLocally: Int64 { get }
    /// Times the transport's connection was lost and made again (NATS; ZeroMQ reconnects unseen, 0): messages on
    /// their way at the loss show only as gaps.
    var reconnects: UInt64 { get }
}

/// A ZeroMQ SUB socket subscribed to the patterns' literal prefixes (ZeroMQ filters bytes, not tokens).
final class ZMQTransport: SubscriberTransport {
    let context: ZMQContext
    let socket: ZMQSocket

    init(endpoint: String, patterns: [SubjectPattern], context: ZMQContext, receiveHighWaterMark: Int) throws(ZMQError) {
        self.context = context
        socket = try context.socket(.sub)
        try socket.setReceiveHighWaterMark(receiveHighWaterMark)
        for prefix in Set(patterns.map(\.zmqPrefix)) { try socket.subscribe(prefix) }
        try socket.connect(endpoint)
    }

    func receive(timeoutMs: Int) throws(ZMQError) -> [[UInt8]]? {
        if let frames = try socket.receiveMultipart(dontWait: true) { return frames }
        guard timeoutMs != 0 else { return nil }
        guard try socket.waitReadable(timeoutMs: timeoutMs) else { return nil }
        return try socket.receiveMultipart(dontWait: true)
    }

    var droppedLocally: Int64 { 0 }
    var reconnects: UInt64 { 0 }
}

/// NATS subscriptions, one per pattern, filtered token-exactly by the servers.
///
/// Overlapping patterns (`MD.XNAS.*.TRADE` and `MD.*.AAPL.TRADE`) each get their own copy of a subject both
/// match, on their own delivery threads. A subject is taken only from the first subscription (in pattern order)
/// whose pattern matches it, so each message is delivered once and each subject's messages stay in order.
final class NATSTransport: SubscriberTransport, @unchecked Sendable {
    let connection: NATSConnection
    private var subscriptions: [NATSSubscription] = []
    private let condition = NSCondition()
    private var queue: [[[UInt8]]] = []
    private var head = 0
    /// Messages this process may hold unread; beyond it they are dropped and counted (a stalled reader must
    /// not grow without bound; its gaps show when it reads again).
    private let limit: Int
    private var droppedHere: Int64 = 0

    /// - Parameters:
    ///   - pendingLimit: messages the client library may hold per subscription before it drops (counted in
    ///     `droppedLocally`, and seen as gaps).
    init(servers: [String], patterns: [SubjectPattern], pendingLimit: Int32) throws(NATSError) {
        var options = NATSConnection.Options(servers: servers)
        options.name = "tickwire-subscriber"
        options.maxPendingMessages = pendingLimit
        options.maxReconnect = -1
        connection = try NATSConnection(options)
        limit = Int(pendingLimit)
        for (index, pattern) in patterns.enumerated() {
            let owner = FirstOwner(index: index, patterns: patterns)
            let sub = try connection.subscribe(pattern.text, pendingLimit: pendingLimit) { [self] m in
                let subject = m.subject
                guard owner.owns(subject) else { return }
                let parts = [Array(subject.utf8), m.bytes]
                condition.lock()
                if queue.count - head >= limit {
                    droppedHere += 1
                } else {
                    queue.append(parts)
                    condition.signal()
                }
                condition.unlock()
            }
            subscriptions.append(sub)
        }
        // Interest reaches the server before the first receive: what is published from here on arrives.
        try connection.flush()
    }

    deinit {
        for s in subscriptions { s.unsubscribe() }
        connection.close()
    }

    func receive(timeoutMs: Int) throws(ZMQError) -> [[UInt8]]? {
        condition.lock()
        defer { condition.unlock() }
        if head == queue.count && timeoutMs != 0 {
            let deadline = timeoutMs < 0 ? Date.distantFuture : Date().addingTimeInterval(Double(timeoutMs) / 1000)
            while head == queue.count && condition.wait(until: deadline) {}
        }
        guard head < queue.count else { return nil }
        let parts = queue[head]
        head += 1
        if head >= 4096 && head * 2 >= queue.count {
            queue.removeFirst(head)
            head = 0
        }
        return parts
    }

    var droppedLocally: Int64 {
        condition.lock()
        defer { condition.unlock() }
        return droppedHere + subscriptions.reduce(0) { $0 + $1.dropped }
    }

    var reconnects: UInt64 { connection.statistics().reconnects }
}

/// Decides, on one subscription's delivery thread, whether that subscription is the first whose pattern matches
/// a subject (cached per subject; used by that thread alone).
private final class FirstOwner: @unchecked Sendable {
    let index: Int
    let patterns: [SubjectPattern]
    private var known: [String: Bool] = [:]
    init(index: Int, patterns: [SubjectPattern]) { self.index = index; self.patterns = patterns }

    func owns(_ subject: String) -> Bool {
        if let k = known[subject] { return k }
        let first = patterns.firstIndex { $0.matches(subjectText: subject) }
        // A subject no pattern matches (the server filtered for us, so only a bug upstream) goes through to the
        // subscriber's own check, which counts it as filtered.
        let mine = first == nil ? index == 0 : first == index
        if known.count < 1 << 20 { known[subject] = mine }
        return mine
    }
}
