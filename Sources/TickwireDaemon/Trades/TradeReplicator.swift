import Foundation
import TickwireCore
import TickwireNATS
import TickwireRing

/// How replicated trading runs (`[trades] replication = "jetstream"`): the JetStream cluster that sequences every
/// daemon's trade requests into one log, and this daemon's name in it.
public struct TradeReplicationConfig: Sendable, Equatable {
    /// The cluster's client URLs (any server will do; the client fails over between them).
    public var servers: [String]
    /// This daemon's name, carried in each request it puts in the log (`origin` in `tickwire audit`).
    public var node: String
    /// The stream that holds the log, and the subject requests are published on.
    public var stream = "TICKWIRE_TRADES"
    public var subject = "tickwire.trades.requests"
    /// Copies of the log in the cluster: 3 survives the loss of one server.
    public var replicas = 3
    /// How long a submission waits for the log to take it and this daemon to journal it before it is refused as
    /// of unknown outcome. Above a leader election (4–7 s on the Debian server) so that one is ridden out.
    public var ackTimeoutMs: Int64 = 10_000
    /// JetStream's `Nats-Msg-Id` deduplication window; the journal's own (trader, id) index covers retries after it.
    public var duplicateWindowSeconds = 120
    /// Asynchronous publishes in flight at most.
    public var maxInFlight: Int64 = 4_096

    public init(servers: [String], node: String) { self.servers = servers; self.node = node }
}

/// The NATS side of replicated trading: puts requests into the JetStream log (deduplicated by trader and client
/// order id) and delivers the log back in its order, from any sequence, to the trade service's thread.
///
/// Everything that reaches the service comes through `drain()` (filled on libnats' threads, which then call
/// `wake`): the log's outcome for each publish, and each message of the log. The service applies the log in
/// order and owns every decision; this type only moves bytes.
final class TradeReplicator: @unchecked Sendable {
    enum Inbound {
        /// The log took the request (at `sequence`; `duplicate` when it already held this id) or did not.
        case published(msgId: String, Result<JetStream.PubAck, NATSError>)
        /// A message of the log, read by a consumer or a fill asked for in `epoch` (`consume`, `fill`).
        case logged(sequence: UInt64, timeNanos: Int64, bytes: [UInt8], epoch: UInt64)
        /// The stream is there and ends at `last`; `atJournalEnd` is its message at the sequence asked for.
        case streamReady(last: UInt64, atJournalEnd: JetStream.StoredMessage?)
        /// Setting the stream up, or a consumer, failed.
        case setupFailed(String)
        /// The stream's last sequence and the server leading it, as asked.
        case lastSequence(UInt64, leader: String?)
        /// The log's message at `sequence` as read back by `check` (nil: the log holds none there).
        case checked(sequence: UInt64, message: (timeNanos: Int64, bytes: [UInt8])?, token: UInt64)
        /// The log's message at `sequence` as read by `spot` (nil: the log holds none there).
        case spot(sequence: UInt64, message: (timeNanos: Int64, bytes: [UInt8])?)
        /// A `check` ended: every sequence of `range` was read (`complete`), or the cluster stopped answering.
        case checkDone(range: ClosedRange<UInt64>, complete: Bool, token: UInt64)
        /// A consumer asked for with `consume` delivers now (or could not be made: `.setupFailed` came first).
        case consumerDone(started: Bool)
        /// A `fill` ended (all read, or the cluster stopped answering).
        case fillDone
    }

    let config: TradeReplicationConfig
    private let connection: NATSConnection
    private let jetStream: JetStream
    private let inbound = Locked<[Inbound]>([])
    private let wake: @Sendable () -> Void
    private let log: @Sendable (String) -> Void
    private var subscription: NATSSubscription?
    /// Every call that waits for the cluster (creating the stream or a consumer, reading a message) runs here,
    /// never on the trade service's thread, which must keep answering while the cluster elects or is gone.
    private let control = DispatchQueue(label: "tickwire.trades.replication")
    /// Reading the log back to check it (`check`) has a queue of its own: a long check never delays a fill.
    private let checking = DispatchQueue(label: "tickwire.trades.replication.check")
    /// Publishes not yet answered, counted here so that a stalled cluster refuses at once instead of stalling
    /// the service thread in libnats' wait for room.
    private let unanswered = Locked(0)

    /// Connects in the background (start never fails on a cluster that is down: trading waits for it).
    init(_ config: TradeReplicationConfig, wake: @escaping @Sendable () -> Void,
         log: @escaping @Sendable (String) -> Void) throws(NATSError) {
        self.config = config
        self.wake = wake
        self.log = log
        var options = NATSConnection.Options(servers: config.servers)
        options.name = "tickwire-trades-\(config.node)"
        options.sendAsap = true
        options.retryOnFailedConnect = true
        options.connectTimeoutMs = 1_000
        options.maxPendingMessages = -1
        options.onEvent = { event in
            switch event {
            case .disconnected: log("trades: replicated log: disconnected from the cluster; submissions are refused until it is back")
            case .reconnected(let url): log("trades: replicated log: connected to \(url)")
            case .error(let e): log("trades: replicated log: \(e)")
            case .closed: break
            }
            wake()
        }
        connection = try NATSConnection(options)
        var jsOptions = JetStream.Options()
        jsOptions.waitMs = 2_000
        jsOptions.maxPendingAsync = config.maxInFlight
        jsOptions.stallWaitMs = 1
        let inbound = self.inbound, unanswered = self.unanswered
        jsOptions.onAsyncAck = { msgId, result in
            unanswered.withLock { $0 -= 1 }
            Self.post(.published(msgId: msgId ?? "", result), to: inbound, wake: wake)
        }
        jetStream = try connection.jetStream(jsOptions)
    }

    var isConnected: Bool { connection.isConnected }
    var connectedURL: String { connection.connectedURL }

    private func post(_ item: Inbound) { Self.post(item, to: inbound, wake: wake) }

    /// Appends for the service thread, waking it only when the queue was empty: a non-empty queue already has a
    /// wake-up on its way, or is being drained (the service drains after it takes a wake-up). One wake-up per
    /// burst instead of one inproc message per log message.
    private static func post(_ item: Inbound, to inbound: Locked<[Inbound]>, wake: () -> Void) {
        let wasEmpty = inbound.withLock { queue -> Bool in
            queue.append(item)
            return queue.count == 1
        }
        if wasEmpty { wake() }
    }

    /// Creates the stream if the cluster has none (a log: nothing deleted, nothing purged, kept for ever), then
    /// posts `.streamReady` with its last sequence and its message at `journalEnd` (when the stream holds it),
    /// or `.setupFailed`.
    func setUp(journalEnd: UInt64) {
        control.async { [self] in
            do {
                var stream = JetStream.StreamConfig(name: config.stream, subjects: [config.subject])
                stream.replicas = config.replicas
                stream.duplicateWindowNanos = Int64(config.duplicateWindowSeconds) * 1_000_000_000
                let last = try jetStream.addStream(stream).lastSequence
                let logged = journalEnd > 0 && journalEnd <= last ? try jetStream.message(stream: config.stream, sequence: journalEnd) : nil
                post(.streamReady(last: last, atJournalEnd: logged))
            } catch {
                post(.setupFailed("\(error)"))
            }
        }
    }

    /// Posts the stream's last sequence and leader (nothing when the cluster does not answer).
    func askLastSequence() {
        control.async { [self] in
            if let info = try? jetStream.streamInfo(config.stream) { post(.lastSequence(info.lastSequence, leader: info.leader)) }
        }
    }

    /// Reads `range` of the log back by sequence, for the service to compare with what it applied: posts each
    /// message (or that the log holds none there), then `.checkDone`. Stops at the first read the cluster does
    /// not answer (an election): an unanswered read says nothing about the log's contents. Everything posted
    /// carries `token`.
    func check(_ range: ClosedRange<UInt64>, token: UInt64) {
        checking.async { [self] in
            for seq in range {
                do throws(NATSError) {
                    let m = try jetStream.message(stream: config.stream, sequence: seq)
                    post(.checked(sequence: seq, message: (m.timestampNanos, m.bytes), token: token))
                } catch {
                    guard error.isNotFound else {
                        post(.checkDone(range: range, complete: false, token: token))
                        return
                    }
                    post(.checked(sequence: seq, message: nil, token: token))
                }
            }
            post(.checkDone(range: range, complete: true, token: token))
        }
    }

    /// Reads the log's message at `seq` from the stream's leader and posts it as `.spot` (nothing when the
    /// cluster does not answer). A consumer reads the store of whichever server holds it (nats-server 2.9.10
    /// places an ephemeral consumer on a random replica), and a replica can hold a tail the leader no longer
    /// has: a spot read of what was last applied tells the service within a second.
    func spot(_ seq: UInt64) {
        checking.async { [self] in
            do throws(NATSError) {
                let m = try jetStream.message(stream: config.stream, sequence: seq)
                post(.spot(sequence: seq, message: (m.timestampNanos, m.bytes)))
            } catch {
                if error.isNotFound { post(.spot(sequence: seq, message: nil)) }
            }
        }
    }

    /// Delivers the log from `sequence` on, in order, replacing an earlier consumer; `.setupFailed` if it cannot
    /// be created. What an old consumer still had queued may arrive too: the service skips what it has applied,
    /// and drops what was read in an earlier `epoch` (before a rollback: the log as it was then).
    func consume(from sequence: UInt64, epoch: UInt64) {
        control.async { [self] in
            subscription?.unsubscribe()
            subscription = nil
            do {
                subscription = try jetStream.subscribeOrdered(stream: config.stream, subject: config.subject, startSequence: sequence) { [self] m in
                    guard let position = m.streamPosition else { return }
                    post(.logged(sequence: position.sequence, timeNanos: position.timestampNanos, bytes: m.bytes, epoch: epoch))
                }
                post(.consumerDone(started: true))
            } catch {
                post(.setupFailed("consumer from \(sequence): \(error)"))
                post(.consumerDone(started: false))
            }
        }
    }

    /// Reads `range` of the log directly (a hole an ordered consumer left) and posts each message in order.
    func fill(_ range: ClosedRange<UInt64>, epoch: UInt64) {
        control.async { [self] in
            defer { post(.fillDone) }
            for seq in range {
                guard let m = try? jetStream.message(stream: config.stream, sequence: seq) else { return }
                post(.logged(sequence: seq, timeNanos: m.timestampNanos, bytes: m.bytes, epoch: epoch))
            }
        }
    }

    func stopConsuming() {
        control.sync {
            subscription?.unsubscribe()
            subscription = nil
        }
    }

    /// Puts one request into the log.
    /// - Throws: at once when it cannot be sent: no connection, or too many publishes unanswered (a cluster that
    ///   takes nothing). The request is then certainly not in the log.
    func publish(_ bytes: [UInt8], msgId: String) throws(NATSError) {
        let admitted = unanswered.withLock { n -> Bool in
            guard n < config.maxInFlight else { return false }
            n += 1
            return true
        }
        guard admitted else {
            throw NATSError(status: 0, operation: "replicated log", text: "\(config.maxInFlight) requests are waiting for the cluster to confirm them")
        }
        guard connection.isConnected else {
            unanswered.withLock { $0 -= 1 }
            throw NATSError(status: 0, operation: "replicated log", text: "not connected to the cluster (\(config.servers.joined(separator: ",")))")
        }
        do { try jetStream.publishAsync(config.subject, bytes: bytes, msgId: msgId) } catch {
            unanswered.withLock { $0 -= 1 }
            throw error
        }
    }

    /// Gives up on every publish still waiting for its answer (a cluster without quorum never answers): they are
    /// taken back from the client library, and counted as answered.
    func abandonUnanswered() -> Int {
        let n = jetStream.abandonPendingAsync()
        unanswered.withLock { $0 = max(0, $0 - n) }
        return n
    }

    func drain() -> [Inbound] { inbound.withLock { items in defer { items.removeAll(keepingCapacity: true) }; return items } }

    func close() {
        stopConsuming()
        control.sync {}
        checking.sync {}
        connection.close()
    }
}
