import TickwireCore

/// Sends trades through a `TradeClient` and hands back one final outcome per trade sent, resending the same id
/// after no reply or after a refusal that says "not now" (REJECT 7, the replicated log unavailable): an id names
/// one trade, so a resend never makes a second one, and through a replicated pair it reaches whichever daemon is
/// up. Used by `tickwire trade submit`, the replicated tests' client and the failover bench.
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
        /// Its final outcome has been handed out (it leaves `queue` once every trade sent before it has too).
        var done = false
    }
    /// The trades sent, in the order they were first sent, from `head` on; those before `head` are done. Replies
    /// come back in this order nearly always (one message's replies together and in order, messages in the
    /// journal's order), so a reply is matched by comparing its id with the first trades not done, without
    /// hashing any id: thousands are in flight, and hashing each id twice was the largest part of this thread's
    /// bookkeeping.
    // One thread's (the submitter is not shared): exclusivity is not checked at run time (a runtime call pair
    // per access, several a trade).
    @exclusivity(unchecked) private var queue: [Pending] = []
    @exclusivity(unchecked) private var head = 0
    @exclusivity(unchecked) private var live = 0
    /// The outstanding trades are scanned for resends and give-ups at most this often, not on every reply (a
    /// scan is O(outstanding), and `trade submit --file` keeps thousands in flight).
    private let scanIntervalNanos: Int64
    @exclusivity(unchecked) private var nextScan: Int64 = 0

    public init(client: TradeClient, policy: Policy = Policy()) {
        self.client = client
        self.policy = policy
        let shortest = min(policy.resendAfterMs.map { min($0, policy.resendRefusedAfterMs) } ?? policy.giveUpAfterMs, policy.giveUpAfterMs)
        scanIntervalNanos = Int64(max(1, min(100, shortest / 4))) * 1_000_000
    }

    /// Trades sent and not yet finally answered.
    public var outstanding: Int { live }

    /// Sends `requests`, up to `batch` in a message. Each is outstanding from now, also when the send throws: it
    /// is then resent after `resendAfterMs`. Each gets its own outcome, also one that repeats an id still
    /// outstanding (the daemon answers it with the first's sequence, as a retry).
    /// - Throws: `TradeServiceError.zmq` when the socket refuses the message.
    public func send(_ requests: [TradeRequest], batch: Int = 1) throws {
        try send(encoded: requests.map(EncodedTrade.init), batch: batch)
    }

    /// `send(_:batch:)` for SUBMIT frames encoded beforehand (`TradeLine` reads them straight from text).
    public func send(encoded trades: [EncodedTrade], batch: Int = 1) throws {
        let now = Nanos.now().rawValue
        let resendAt = now + Int64(policy.resendAfterMs ?? Int.max / 2_000_000) * 1_000_000
        let giveUpAt = now + Int64(policy.giveUpAfterMs) * 1_000_000
        for t in trades { queue.append(Pending(trade: t, resendAt: resendAt, giveUpAt: giveUpAt)) }
        live += trades.count
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

    /// The first outstanding trade with this id (a late reply, to a trade already answered, finds none).
    private func match(_ id: String) -> Int? {
        var i = head
        while i < queue.count {
            if !queue[i].done && queue[i].trade.hasClientOrderID(id) { return i }
            i += 1
        }
        return nil
    }

    /// Marks trade `i` answered (indices stay valid until `compact`).
    private func finish(_ i: Int) {
        queue[i].done = true
        live -= 1
        while head < queue.count && queue[head].done { head += 1 }
    }

    /// Drops the answered trades at the front now and then (under a steady stream the queue may never empty).
    private func compact() {
        if head == queue.count {
            queue.removeAll(keepingCapacity: true); head = 0
        } else if head >= 4096 && head * 2 >= queue.count {
            queue.removeFirst(head); head = 0
        }
    }

    /// Hands out replies as they come (as `poll` does, resending and giving up on time) until `fd` has input to
    /// read or nothing is outstanding: what a caller reading trades from a pipe does between reads, so that a
    /// trade read is answered before the next one arrives. `idle` runs each time no reply is waiting.
    public func takeReplies(untilReadable fd: Int32, _ body: (Outcome) -> Void, idle: () -> Void) throws {
        while live > 0 {
            if try poll(timeoutMs: 0, body) { continue }
            idle()
            // Bounded, so that resends and give-ups (checked by `poll`) are on time.
            if try client.waitForReply(orInput: fd, timeoutMs: 100).input { return }
        }
    }

    /// Gives up on the trades past their time and resends those due, then waits up to `timeoutMs` for replies
    /// and hands every final outcome to `body` (a late reply to a trade already answered is dropped).
    /// - Returns: whether a reply arrived.
    /// - Throws: `TradeServiceError.zmq`.
    @discardableResult
    public func poll(timeoutMs: Int, _ body: (Outcome) -> Void) throws -> Bool {
        var now = Nanos.now().rawValue
        if now >= nextScan {
            nextScan = now + scanIntervalNanos
            var due: [EncodedTrade] = []
            var i = head
            while i < queue.count {
                defer { i += 1 }
                if queue[i].done { continue }
                if queue[i].giveUpAt <= now {
                    let id = queue[i].trade.clientOrderID
                    finish(i)
                    body(.noReply(clientOrderID: id, milliseconds: policy.giveUpAfterMs))
                } else if let after = policy.resendAfterMs, queue[i].resendAt <= now {
                    if queue[i].refused { refusedAndResent += 1 } else { resends += 1 }
                    queue[i].refused = false
                    queue[i].resendAt = now + Int64(after) * 1_000_000
                    due.append(queue[i].trade)
                }
            }
            compact()
            // A failed resend is tried again at the next due time, like a lost one.
            if !due.isEmpty { try? transmit(due, batch: TradeWire.maxTradesPerMessage) }
        }
        if live == 0 && timeoutMs != 0 { return false }
        let untilScan = Int((nextScan - now + 999_999) / 1_000_000)
        let wait = timeoutMs < 0 ? untilScan : min(timeoutMs, untilScan)
        guard let first = try client.receive(timeoutMs: max(0, wait)) else { return false }
        var reply: TradeReply? = first
        // Replies that came in the same message are handed out now; the socket is not read again, so that a
        // caller keeping a window in flight sends more as soon as there is room.
        while let r = reply {
            if let i = match(r.clientOrderID) {
                now = Nanos.now().rawValue
                if case .reject(_, let why) = r, policy.resendAfterMs != nil, policy.transient.contains(why.code), now < queue[i].giveUpAt {
                    queue[i].refused = true
                    queue[i].resendAt = now + Int64(policy.resendRefusedAfterMs) * 1_000_000
                    nextScan = min(nextScan, queue[i].resendAt)
                } else {
                    finish(i)
                    body(.replied(r))
                }
            }
            reply = client.hasBufferedReply ? try client.receive(timeoutMs: 0) : nil
        }
        compact()
        return true
    }

    /// Polls until fewer than `limit` trades are outstanding (0: until none is).
    public func drain(untilBelow limit: Int = 1, _ body: (Outcome) -> Void) throws {
        while live >= max(1, limit) { try poll(timeoutMs: -1, body) }
    }
}
