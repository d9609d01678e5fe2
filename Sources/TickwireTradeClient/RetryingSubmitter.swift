import TickwireCore

/// Sends trades through a `TradeClient` and hands back one final outcome per client order id, resending the
/// same id after no reply or after a refusal that says "not now" (REJECT 7, the replicated log unavailable): an
/// id names one trade, so a resend never makes a second one, and through a replicated pair it reaches whichever
/// daemon is up. Used by `tickwire trade submit`, the replicated tests' client and the failover bench.
///
/// Not thread-safe: one thread drives it, as it drives its `TradeClient`.
public final class RetryingSubmitter {
    public struct Policy: Sendable {
        /// Resend a trade with no reply after this long (nil: never resend; a refusal is then final too).
        public var resendAfterMs: Int?
        /// After a transient refusal, resend after this long.
        public var resendRefusedAfterMs: Int
        /// Give up on a trade this long after it was first sent (`Outcome.noReply`).
        public var giveUpAfterMs: Int
        /// The refusals that mean "try again": by default the replicated log's (`.replicationUnavailable`).
        public var transient: Set<RejectReason.Code>

        public init(resendAfterMs: Int? = 2_000, resendRefusedAfterMs: Int? = nil, giveUpAfterMs: Int = 10_000,
                    transient: Set<RejectReason.Code> = [.replicationUnavailable]) {
            self.resendAfterMs = resendAfterMs
            self.resendRefusedAfterMs = resendRefusedAfterMs ?? resendAfterMs ?? 0
            self.giveUpAfterMs = giveUpAfterMs
            self.transient = transient
        }
    }

    /// A trade's final outcome.
    public enum Outcome: Sendable, Equatable {
        /// Its acknowledgement, or a refusal that is final.
        case replied(TradeReply)
        /// No final reply within `Policy.giveUpAfterMs` of its first send (it may still have been recorded:
        /// resending the same id later tells).
        case noReply(clientOrderID: String, milliseconds: Int)

        public var clientOrderID: String {
            switch self {
            case .replied(let r): r.clientOrderID
            case .noReply(let id, _): id
            }
        }
    }

    public let client: TradeClient
    public let policy: Policy
    /// Resends after no reply, and resends after a transient refusal, so far.
    public private(set) var resends = 0, refusedAndResent = 0

    private struct Pending {
        var trade: EncodedTrade
        var resendAt: Int64
        let giveUpAt: Int64
        /// Due because it was refused for now (counted in `refusedAndResent`), not for want of a reply.
        var refused = false
    }
    private var pending: [String: Pending] = [:]
    /// The outstanding trades are scanned for resends and give-ups at most this often, not on every reply (a
    /// scan is O(outstanding), and `trade submit --file` keeps thousands in flight).
    private let scanIntervalNanos: Int64
    private var nextScan: Int64 = 0

    public init(client: TradeClient, policy: Policy = Policy()) {
        self.client = client
        self.policy = policy
        let shortest = min(policy.resendAfterMs.map { min($0, policy.resendRefusedAfterMs) } ?? policy.giveUpAfterMs, policy.giveUpAfterMs)
        scanIntervalNanos = Int64(max(1, min(100, shortest / 4))) * 1_000_000
    }

    /// Trades sent and not yet finally answered.
    public var outstanding: Int { pending.count }
    public func isOutstanding(_ clientOrderID: String) -> Bool { pending[clientOrderID] != nil }

    /// Sends `requests`, up to `batch` in a message. Each is outstanding from now (a resend of an outstanding id
    /// keeps its first give-up time), also when the send throws: it is then resent after `resendAfterMs`.
    /// - Throws: `TradeServiceError.zmq` when the socket refuses the message.
    public func send(_ requests: [TradeRequest], batch: Int = 1) throws {
        try send(encoded: requests.map(EncodedTrade.init), batch: batch)
    }

    /// `send(_:batch:)` for SUBMIT frames encoded beforehand (`TradeLine` reads them straight from text).
    public func send(encoded trades: [EncodedTrade], batch: Int = 1) throws {
        let now = Nanos.now().rawValue
        let resendAt = now + Int64(policy.resendAfterMs ?? Int.max / 2_000_000) * 1_000_000
        let giveUpAt = now + Int64(policy.giveUpAfterMs) * 1_000_000
        // One hash of the id a trade (a resend keeps the first give-up time): thousands are in flight, and the
        // id's hashing was most of this thread's time.
        for t in trades {
            modify(&pending[t.clientOrderID, default: Pending(trade: t, resendAt: resendAt, giveUpAt: giveUpAt)]) { p in
                p.trade = t
                p.resendAt = resendAt
                p.refused = false
            }
        }
        try transmit(trades, batch: batch)
    }

    private func transmit(_ trades: [EncodedTrade], batch: Int) throws {
        var i = 0
        while i < trades.count {
            let end = min(i + max(1, batch), trades.count)
            try client.send(encoded: trades[i..<end])
            i = end
        }
    }

    /// Gives up on the trades past their time and resends those due, then waits up to `timeoutMs` for replies
    /// and hands every final outcome to `body` (a late reply to an id already answered is dropped).
    /// - Returns: whether a reply arrived.
    /// - Throws: `TradeServiceError.zmq`.
    @discardableResult
    public func poll(timeoutMs: Int, _ body: (Outcome) -> Void) throws -> Bool {
        var now = Nanos.now().rawValue
        if now >= nextScan {
            nextScan = now + scanIntervalNanos
            var due: [EncodedTrade] = []
            for (id, p) in pending {
                if p.giveUpAt <= now {
                    pending[id] = nil
                    body(.noReply(clientOrderID: id, milliseconds: policy.giveUpAfterMs))
                } else if policy.resendAfterMs != nil && p.resendAt <= now {
                    due.append(p.trade)
                }
            }
            if !due.isEmpty {
                for r in due {
                    if pending[r.clientOrderID]!.refused { refusedAndResent += 1 } else { resends += 1 }
                    pending[r.clientOrderID]!.refused = false
                    pending[r.clientOrderID]!.resendAt = now + Int64(policy.resendAfterMs!) * 1_000_000
                }
                // A failed resend is tried again at the next due time, like a lost one.
                try? transmit(due, batch: TradeWire.maxTradesPerMessage)
            }
        }
        if pending.isEmpty && timeoutMs != 0 { return false }
        let untilScan = Int((nextScan - now + 999_999) / 1_000_000)
        let wait = timeoutMs < 0 ? untilScan : min(timeoutMs, untilScan)
        guard let first = try client.receive(timeoutMs: max(0, wait)) else { return false }
        var reply: TradeReply? = first
        // Replies that came in the same message are handed out now; the socket is not read again, so that a
        // caller keeping a window in flight sends more as soon as there is room.
        while let r = reply {
            now = Nanos.now().rawValue
            if var p = pending.removeValue(forKey: r.clientOrderID) {
                if case .reject(_, let why) = r, policy.resendAfterMs != nil, policy.transient.contains(why.code), now < p.giveUpAt {
                    p.refused = true
                    p.resendAt = now + Int64(policy.resendRefusedAfterMs) * 1_000_000
                    nextScan = min(nextScan, p.resendAt)
                    pending[r.clientOrderID] = p
                } else {
                    body(.replied(r))
                }
            }
            reply = client.hasBufferedReply ? try client.receive(timeoutMs: 0) : nil
        }
        return true
    }

    /// Polls until fewer than `limit` trades are outstanding (0: until none is).
    public func drain(untilBelow limit: Int = 1, _ body: (Outcome) -> Void) throws {
        while pending.count >= max(1, limit) { try poll(timeoutMs: -1, body) }
    }
}

/// Runs `body` on a value in place (a dictionary's `[key, default:]` accessor: one lookup to insert or change).
@inline(__always) private func modify<T>(_ value: inout T, _ body: (inout T) -> Void) { body(&value) }
