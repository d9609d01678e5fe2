/// How much the PUB socket holds for its subscribers at most, and which of them to cut to keep it within
/// `[publish] memory_budget_mb`: the accounting, fed with events and samples, never with sockets (the monitor,
/// `PublishBudgetMonitor`, does the I/O).
///
/// libzmq keeps a queue per subscriber of at most the high-water mark (`mark`) and lets a stalled one fill it;
/// the daemon cannot see those queues, but it can bound them:
/// - A queue holds at most `mark` messages, and at most the messages published since the kernel last showed
///   that connection taking more bytes: then libzmq is not held back and writes out what it queued, so its
///   queue is empty.
/// - When the sum of those bounds passes the budget, the subscribers the kernel shows pushed back (send buffer
///   full: the peer's window shut, or a path slower than the feed) are cut, the longest stalled first (then
///   the one holding most), until it fits. A subscriber seen keeping up is never a candidate.
///
/// The mark is fixed for the socket's life: libzmq 4.3 applies a changed SNDHWM to live queues, but each
/// reader acknowledges reads only every "low-water mark" messages computed from the old value, so lowering or
/// raising it can leave a healthy subscriber's queue marked full forever (it did here: a reading subscriber
/// stopped receiving). Cutting is what bounds the total instead of a per-subscriber share.
struct SubscriberBudget {
    /// One connected subscriber, keyed by its descriptor.
    struct Peer: Equatable {
        /// The published count when the peer was last seen drained (or joined).
        var since: UInt64
        /// When the kernel first showed it pushed back, in the current run of such samples.
        var stalledSince: Int64?
        /// Cut by the daemon, awaiting libzmq's disconnect: its queue is being freed and no longer counted.
        var cut = false
        /// Whether the daemon can cut it (a TCP connection); others are counted but never candidates.
        var cuttable = true
    }

    let budgetMessages: Int
    let mark: Int
    private(set) var peers: [Int32: Peer] = [:]

    /// - Parameters:
    ///   - budgetMessages: messages all queues together may hold (the budget in bytes over bytes per message).
    ///   - mark: the most one queue may hold (the socket's SNDHWM).
    init(budgetMessages: Int, mark: Int) {
        precondition(budgetMessages >= 1 && mark >= 1)
        self.budgetMessages = budgetMessages
        self.mark = mark
    }

    var subscribers: Int { peers.count }
    var stalled: Int { peers.values.filter { !$0.cut && $0.stalledSince != nil }.count }

    mutating func join(_ fd: Int32, published: UInt64, cuttable: Bool = true) {
        peers[fd] = Peer(since: published, cuttable: cuttable)
    }

    mutating func leave(_ fd: Int32) {
        peers.removeValue(forKey: fd)
    }

    /// One sample of a peer's connection: `pushedBack` when the kernel takes no more bytes for it (libzmq is
    /// then held back and its queue may grow).
    mutating func observe(_ fd: Int32, pushedBack: Bool, now: Int64, published: UInt64) {
        guard var p = peers[fd], !p.cut else { return }
        if pushedBack {
            p.stalledSince = p.stalledSince ?? now
        } else {
            p.stalledSince = nil
            p.since = published
        }
        peers[fd] = p
    }

    /// At most how many messages a peer's queue holds now.
    func bound(_ p: Peer, published: UInt64) -> Int {
        if p.cut { return 0 }
        let sent = published &- p.since
        return sent >= UInt64(mark) ? mark : Int(sent)
    }

    /// At most how many messages every queue together holds now.
    func held(published: UInt64) -> Int { peers.values.reduce(0) { $0 + bound($1, published: published) } }

    /// The peers to cut so the queues fit the budget: pushed-back ones, the longest stalled first (then the
    /// largest bound), until the bound fits or no candidate is left. They are marked cut and stop counting; they
    /// leave when libzmq reports the disconnect.
    mutating func cutOverBudget(published: UInt64) -> [Int32] {
        var total = held(published: published)
        guard total > budgetMessages else { return [] }
        let candidates = peers.compactMap { fd, p -> (fd: Int32, since: Int64, bound: Int)? in
            guard !p.cut, p.cuttable, let since = p.stalledSince else { return nil }
            return (fd, since, bound(p, published: published))
        }.sorted { a, b in
            if a.since != b.since { return a.since < b.since }
            return a.bound != b.bound ? a.bound > b.bound : a.fd < b.fd
        }
        var out: [Int32] = []
        for c in candidates where total > budgetMessages {
            total -= c.bound
            peers[c.fd]!.cut = true
            out.append(c.fd)
        }
        return out
    }
}
