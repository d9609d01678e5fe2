import CTickwireSys
import Foundation
import Synchronization
import TickwireCore
import TickwireJournal
import TickwireRing
import TickwireZMQ

/// How the trade service runs.
public struct TradeServiceConfig: Sendable {
    /// Where clients connect (ZeroMQ ROUTER, CURVE server).
    public var endpoint: String
    /// Admitted traders: name → CURVE public key (Z85). Empty: the key files under `DATA/keys/traders/`
    /// (created with a first trader on first start).
    public var traders: [String: String]
    /// The server's CURVE secret key (Z85); nil: `DATA/keys/server.key` (created on first start).
    public var serverSecretKey: String?
    /// Runs before journaling; a reason refuses the trade (the risk engine fills this).
    public var preTradeCheck: (@Sendable (TradeRequest) -> RejectReason?)?
    /// State built from the journaled trades (risk positions): checkpointed now and then, rebuilt at start and
    /// after a journal failure from the last checkpoint and the trades after it.
    public var state: JournalState?
    public var journal: JournalOptions
    /// How often the retry index and `state` are checkpointed (when every journaled trade is durable): what a
    /// start replays is what came after the last one.
    public var checkpointIntervalNanos: Int64 = 5_000_000_000
    /// Slots of a new retry index (16 bytes each, two per trade): 4M make a 64 MiB table (resident, and its file)
    /// that holds two million trades before its first doubling, which pauses the service thread (about a second
    /// at eight million).
    public var retryIndexSlots = 1 << 22
    /// The CPUs the serving thread (`tw-trades`) may run on (empty: any). It bounds the daemon's trade rate, and
    /// a CPU that takes the journal disk's interrupts preempts it at each sync's completion: kept away from that CPU
    /// it acknowledged 1.21× the trades a second here (BENCH-HISTORY S10).
    public var cpus: [Int] = []
    /// Replicated trading (nil: this daemon alone, its journal the only copy). Every request goes through one
    /// JetStream log; each daemon applies the log in order, deterministically, to its own journal.
    public var replication: TradeReplicationConfig?
    /// Replicated trading: the checks that depend on the live market, made by the daemon that takes a submission
    /// (a reason refuses it before it reaches the log), and the mark they used, which travels with the request.
    public var marketCheck: (@Sendable (TradeRequest) -> (RejectReason?, markE8: Int64))?
    /// Replicated trading: the checks that depend on the positions, made in log order at the logged mark, from
    /// what the log holds alone; applies the trade when they pass. Must be deterministic. `reinstated`: a trade
    /// accepted before at another sequence (the log lost it and it went back in): apply it, unchecked.
    public var sequencedCheck: (@Sendable (TradeRequest, _ markE8: Int64, _ reinstated: Bool) -> RejectReason?)?

    public init(endpoint: String = "tcp://127.0.0.1:5557", traders: [String: String] = [:], serverSecretKey: String? = nil,
                preTradeCheck: (@Sendable (TradeRequest) -> RejectReason?)? = nil, journal: JournalOptions = JournalOptions()) {
        self.endpoint = endpoint; self.traders = traders; self.serverSecretKey = serverSecretKey
        self.preTradeCheck = preTradeCheck; self.journal = journal
    }
}

/// A trade newly durable, as the trade service hands it on (`TradeService.init`'s `publish`): its `Event` (kind
/// `.trade`, `seq` and `c` the journal sequence, subjectID 0) and the desk and symbol of its subject
/// `TRADE.<DESK>.<SYMBOL>`, which the receiver makes and interns: off the serving thread, which is the trade path's
/// busiest.
public struct DurableTrade: Sendable {
    public var event: Event
    public let desk: String, symbol: String

    /// `TRADE.<DESK>.<SYMBOL>`.
    public var subject: String { "TRADE.\(desk).\(symbol)" }
}

/// State the caller derives from journaled trades, and how to keep it (see `TradeServiceConfig.state`).
public struct JournalState: Sendable {
    /// The checkpoint's name (`journal/checkpoints/NAME.ckpt`).
    public var name: String
    /// The state now, as bytes. Called on the service thread when every journaled trade is durable and applied.
    public var take: @Sendable () -> [UInt8]
    /// Forgets the state, starts from `snapshot` (nil: empty), then applies `trades` in sequence order.
    public var rebuild: @Sendable (_ snapshot: [UInt8]?, _ trades: [TradeRequest]) -> Void

    public init(name: String, take: @escaping @Sendable () -> [UInt8],
                rebuild: @escaping @Sendable (_ snapshot: [UInt8]?, _ trades: [TradeRequest]) -> Void) {
        self.name = name; self.take = take; self.rebuild = rebuild
    }
}

/// Trade submission: validate, pre-trade check, sequence, journal durably (group commit, many requests in
/// flight), then acknowledge — or reject with a reason. Retries of a (trader, client order id) get the original
/// acknowledgement. Only traders whose CURVE keys are admitted can connect; their identity is the ZAP User-Id.
///
/// One thread serves the ROUTER socket; the journal's sync thread wakes it through an inproc socket after
/// each group commit, and it then acknowledges everything now durable and publishes each new trade.
public final class TradeService: @unchecked Sendable {
    public struct Counters: Sendable, Equatable {
        public var accepted = 0, duplicates = 0, rejected = 0, malformed = 0
        /// Times the journal stopped on a failure (a full disk), and times it was reopened once writes worked again.
        public var journalFailures = 0, journalResumes = 0
        /// Trades refused because the journal record their answer rests on could not be read back (damage found on
        /// read, an I/O error): a retry's first record (whether it was journaled cannot be told, so it is neither
        /// acknowledged nor journaled again), or, replicated, the decision recorded for it.
        public var journalReadFailures = 0
        /// Replicated trading: times the log's consumer was restarted after it stalled, and times the journal was
        /// rolled back because the log no longer held what had been applied from it.
        public var consumerRestarts = 0, rollbacks = 0
        /// Replicated trading: spot reads of the last applied record that the stream's leader did not bear out.
        public var spotMismatches = 0
        /// Replicated trading: put-back files found damaged at a start (their trades are in `journal/quarantine/`).
        public var putBackFilesDamaged = 0
    }
    /// How often a stopped journal's directory is probed for writes working again.
    static let resumeProbeNanos: Int64 = 1_000_000_000

    public let config: TradeServiceConfig
    public let dataDirectory: String
    private let context: ZMQContext
    let log: @Sendable (String) -> Void
    let publish: @Sendable ([DurableTrade]) -> Void
    /// The trades found durable in one pass, handed to `publish` together at its end (the serving thread's): one
    /// call a group commit, not one a trade, so that the daemon's forwarder takes its lock and wakes its thread
    /// once for them all.
    private var durableTrades: [DurableTrade] = []

    /// Replaced by a reopened one when the disk comes back after a failure (the serving thread's, after `start`).
    var journal: Journal?
    private var journalOptions = JournalOptions()
    private var zap: ZAPHandler?
    private var router: ZMQSocket?
    private var wakeReceiver: ZMQSocket?
    private var wakeSender: ZMQSocket?
    /// (trader, client order id) → journal sequence, on disk (`journal/retry.idx`): what makes a retry return the
    /// original acknowledgement; checked against the journal record on every hit.
    var retryIndex: RetryIndex?
    /// The same for trades journaled and not yet durable (the index is checked against durable records only).
    var inFlight: [RetryKey: (seq: UInt64, request: TradeRequest)] = [:]
    struct RetryKey: Hashable { let trader: String, clientOrderID: String }
    /// The sequence of the last checkpoint (retry index and state), and when the next is due.
    private var checkpointedSeq: UInt64 = 0
    private var nextCheckpoint: Int64 = 0
    /// The service thread's: a checkpoint whose syncs (the retry index's pages, paced, then its header, then the
    /// state file) run on a thread of their own, signalling `checkpointDone` when finished. The service thread
    /// never waits on them: they held it up to ~160 ms every 5 s under load (BENCH-HISTORY J6).
    private var checkpointInFlight = false
    private var checkpointDone = DispatchSemaphore(value: 0)
    /// Set while the service thread waits for it: the rest of its pages are written back without pauses.
    private let checkpointHurry = Atomic<Bool>(false)
    /// What came of it, set by that thread: the checkpoint, whether its header was written, and what failed.
    private let checkpointOutcome = Mutex<CheckpointOutcome?>(nil)
    struct CheckpointOutcome: @unchecked Sendable {
        let index: RetryIndex.PendingCheckpoint
        var headerWritten = false
        var pagesFailure: JournalError?
        var failure: String?
    }
    /// Replicated trading's state (nil without replication): the service thread's.
    var replicated: ReplicatedState?
    /// Messages whose trades are journaled but not all durable yet, in arrival order.
    private var pending: [PendingMessage] = []
    private var pendingHead = 0
    private let stopping = Atomic<Bool>(false)
    private let done = DispatchSemaphore(value: 0)
    private var running = false
    private let counts = Locked(Counters())

    /// The endpoint actually bound (a `*` port resolved), after `start`.
    public private(set) var boundEndpoint = ""
    /// The server's CURVE public key (Z85), after `start`; clients need it.
    public private(set) var serverPublicKey = ""
    /// Traders admitted (name → public key), after `start`.
    public private(set) var admittedTraders: [String: String] = [:]

    /// - Parameters:
    ///   - dataDirectory: holds `journal/` and `keys/`.
    ///   - context: the daemon's ZeroMQ context; the ZAP handler binds `inproc://zeromq.zap.01` on it.
    ///   - log: one line per notable event (refused keys, created keys); called from service threads.
    ///   - publish: the trades newly durable, in journal order (`DurableTrade`); called from the serving thread
    ///     once each time some become durable.
    public init(config: TradeServiceConfig, dataDirectory: String, context: ZMQContext,
                log: @escaping @Sendable (String) -> Void = { _ in },
                publish: @escaping @Sendable ([DurableTrade]) -> Void = { _ in }) {
        self.config = config; self.dataDirectory = dataDirectory; self.context = context
        self.log = log; self.publish = publish
    }

    deinit { stop() }

    /// Replicated trading as the monitor shows it (nil without replication); refreshed by the service thread.
    public struct ReplicationStatus: Sendable, Equatable {
        public var node: String
        public var cluster: String
        public var applied: UInt64
        public var logKnownThrough: UInt64
        /// Caught up with the log and taking trades.
        public var ready: Bool
        /// Why replicated trading stopped here, if it did.
        public var broken: String?
    }
    let replicationStatusBox = Locked<ReplicationStatus?>(nil)
    public var replicationStatus: ReplicationStatus? { replicationStatusBox.withLock { $0 } }

    public var counters: Counters { counts.withLock { $0 } }
    func count(_ body: (inout Counters) -> Void) { counts.withLock { body(&$0) } }

    /// Loads or creates keys, opens and recovers the journal (rebuilding the retry map), starts the ZAP handler,
    /// binds the endpoint and starts serving.
    /// - Throws: `TradeServiceError` (`.bind` on a busy port, `.journal` when recovery refuses, `.keyFile`).
    public func start() throws {
        precondition(!running, "TradeService.start called twice")
        let server: CurveKeyPair
        if config.traders.isEmpty || config.serverSecretKey == nil {
            let loaded = try KeyStore.loadOrCreate(data: dataDirectory, log: log)
            server = config.serverSecretKey.map { CurveKeyPair(name: "server", publicKey: (try? ZMQ.curvePublic(secretKey: $0)) ?? "", secretKey: $0) } ?? loaded.server
            admittedTraders = config.traders.isEmpty ? loaded.traders : config.traders
        } else {
            server = CurveKeyPair(name: "server", publicKey: try ZMQ.curvePublic(secretKey: config.serverSecretKey!), secretKey: config.serverSecretKey)
            admittedTraders = config.traders
        }
        serverPublicKey = server.publicKey

        var options = config.journal
        let wakeEndpoint = "inproc://tickwire-trades-wake-\(UInt(bitPattern: ObjectIdentifier(self).hashValue))"
        let sender = try context.socket(.push)
        try sender.setSendHighWaterMark(4)
        let receiver = try context.socket(.pull)
        try receiver.bind(wakeEndpoint)
        try sender.connect(wakeEndpoint)
        wakeSender = sender; wakeReceiver = receiver
        let userCallback = options.onDurable
        options.onDurable = { [sender] seq in
            _ = try? sender.send([1], dontWait: true)   // a full queue already holds a wake-up
            userCallback?(seq)
        }
        let userDamage = options.onDamage
        let replicatedMode = config.replication != nil
        options.onDamage = { [log] c in
            log(!replicatedMode ? "journal: DAMAGE in records written before this start: \(c); trading goes on, run 'tickwire audit verify'"
                : "journal: DAMAGE in records written before this start: \(c); repairing it from the replicated log")
            userDamage?(c)
        }
        journalOptions = options
        let index: RetryIndex
        do { index = try RetryIndex(path: dataDirectory + "/journal/retry.idx", initialCapacity: config.retryIndexSlots) } catch {
            throw TradeServiceError.journal(error)
        }
        retryIndex = index
        if let why = index.rebuiltReason { log("trades: retry index made anew (\(why)); rebuilding it from the journal") }
        do { journal = try recover(index) } catch .corrupt(let damage) where config.replication != nil {
            // In a replicated pair the log holds every record this journal acknowledged (an acknowledgement waits
            // for the log's), so damage is repaired from it: cut back to the last good record, apply the log again.
            log("journal: DAMAGE at \(damage); the replicated log holds every record: cutting the journal back to the last good record (copies in journal/quarantine/) and applying the log again from there")
            var cut = options
            cut.onCorruption = .truncate
            journalOptions = cut
            defer { journalOptions = options }
            do { journal = try recover(index) } catch { throw TradeServiceError.journal(error) }
        } catch { throw TradeServiceError.journal(error) }
        if let r = journal!.recovery.skippedCorruption { log("journal: skipped damage (operator's choice): \(r)") }
        if journal!.recovery.truncatedBytes > 0 { log("journal: cut a torn tail of \(journal!.recovery.truncatedBytes) bytes (never acknowledged)") }

        if let replication = config.replication {
            let natsWake = try context.socket(.push)
            try natsWake.setSendHighWaterMark(4)
            try natsWake.connect(wakeEndpoint)
            let guarded = Locked(natsWake)
            do {
                let replicator = try TradeReplicator(replication, wake: {
                    guarded.withLock { _ = try? $0.send([1], dontWait: true) }
                }, log: log)
                let state = ReplicatedState(replicator: replicator, wakeSocket: guarded, applied: journal!.durableSequence)
                loadPutBacks(state)
                replicated = state
            } catch {
                natsWake.close()
                journal?.close()
                throw TradeServiceError.replication("\(error)")
            }
        }
        let zap = ZAPHandler(context: context, admitted: Dictionary(admittedTraders.map { ($0.value, $0.key) }, uniquingKeysWith: { a, _ in a }), log: log)
        try zap.start()
        self.zap = zap
        let router = try context.socket(.router)
        try router.setCurveServer(secretKey: server.secretKey!)
        try router.setZapDomain("tickwire-trades")
        try router.setRouterMandatory(false)
        try router.setSendHighWaterMark(0)
        try router.setReceiveHighWaterMark(0)
        // A SUBMIT frame is a few hundred bytes, a packed batch of 1,024 under 1 MiB: an admitted trader sending
        // 100 MB frames is cut, not buffered.
        try router.setMaximumMessageSize(Int64(TradeWire.maxFrameBytes))
        do { try router.bind(config.endpoint) } catch {
            zap.stop(); journal?.close()
            throw TradeServiceError.bind(endpoint: config.endpoint, error)
        }
        boundEndpoint = router.lastEndpoint
        self.router = router
        running = true
        Thread.detachNewThread { [self] in
            _ = tw_set_thread_name("tw-trades")
            if !config.cpus.isEmpty {
                let cpus = config.cpus.map { Int32(clamping: $0) }
                let e = cpus.withUnsafeBufferPointer { tw_set_thread_cpus($0.baseAddress, Int32($0.count)) }
                if e != 0 { log("trades: the service thread runs on any CPU: it cannot be kept to CPUs \(config.cpus): \(String(cString: strerror(e)))") }
            }
            self.serve()
            self.done.signal()
        }
        log("trades: serving \(boundEndpoint) for \(admittedTraders.count) trader(s), journal at seq \(journal!.durableSequence)")
    }

    /// Opens the journal replaying only what follows the last checkpoint of the retry index and of `state` (the
    /// journal reads whole only those segments, and verifies the rest behind), inserts the replayed trades' keys
    /// and rebuilds `state`. A checkpoint the journal no longer backs (cut back since) or an index ahead of the
    /// journal means a full replay instead.
    func recover(_ index: RetryIndex) throws(JournalError) -> Journal {
        // A checkpoint still syncing would write a header or state file behind what recovery reads and cuts.
        waitForCheckpoint()
        let directory = dataDirectory + "/journal"
        let claimed = config.state.map { StateCheckpoint.claimedSeq(journalDirectory: directory, name: $0.name) ?? 0 } ?? .max
        /// Opens replaying from `from`; keeps the trades after `stateAfter` for `state`.
        func open(from: UInt64, stateAfter: UInt64) throws(JournalError) -> (Journal, [(UInt64, TradeRequest)]) {
            var trades: [(UInt64, TradeRequest)] = []
            var insertFailure: JournalError?
            let keepTrades = config.state != nil
            let j = try Journal(directory: directory, options: journalOptions, replayFrom: from) { record in
                guard let t = TradeWire.decodeRecord(record.payload) else { return }
                do { _ = try index.insert(RetryIndex.key(trader: t.trader, clientOrderID: t.clientOrderID), seq: record.seq) }
                catch { insertFailure = insertFailure ?? (error as? JournalError) }
                // In order: every record up to here is in (bounds what the index notes for its digest).
                if record.seq & 0xFFFF == 0 { index.noteInserted(through: record.seq) }
                if keepTrades && record.seq > stateAfter { trades.append((record.seq, t)) }
            }
            if let insertFailure { j.close(); throw insertFailure }
            return (j, trades)
        }
        let from = min(index.coveredThrough, claimed == .max ? index.coveredThrough : claimed) + 1
        var (journal, trades) = try open(from: from, stateAfter: claimed)
        var saved = config.state.flatMap { StateCheckpoint.load(journalDirectory: directory, name: $0.name, journal: journal) }
        let last = journal.durableSequence
        if (claimed > 0 && claimed != .max && saved == nil) || index.coveredThrough > last {
            log("trades: checkpoint past the journal's end (\(last)) or not backed by it; replaying the whole journal")
            journal.close()
            try index.journalEnds(at: min(index.coveredThrough, last))
            (journal, trades) = try open(from: 1, stateAfter: 0)
            saved = nil
        }
        if let state = config.state {
            let after = saved?.seq ?? 0
            let replayed = trades.filter { $0.0 > after }.map(\.1)
            state.rebuild(saved?.state, replayed)
            log("trades: \(state.name) rebuilt through seq \(journal.durableSequence) from \(saved == nil ? "no checkpoint" : "the checkpoint at seq \(after)") and \(replayed.count) journaled trade(s) after it")
        }
        // The next checkpoint is due as soon as the journal holds more than both checkpoints cover.
        checkpointedSeq = config.state == nil ? index.coveredThrough : min(index.coveredThrough, saved?.seq ?? 0)
        inFlight.removeAll()
        log("trades: journal opened at seq \(last); replayed from \(from) (\(journal.recovery.deferredSegments) older segment(s) verified in the background)")
        return journal
    }

    /// Makes the retry index and `state` durable as of the journal's head. Only when every journaled trade is
    /// durable (nothing pending), so the state holds exactly the trades up to that sequence. The cut is taken here
    /// (the index's dirty pages written, the state's bytes taken); the syncs run on a thread of their own, at idle
    /// I/O priority, and what came of them is collected by a later call or by `waitForCheckpoint`. One at a time:
    /// while one is in flight, none begins.
    /// - Parameter paced: the index's pages written back in steps (while trading); the stop syncs them at once.
    func checkpoint(_ journal: Journal, paced: Bool = true) {
        collectCheckpoint()
        guard !checkpointInFlight else { return }
        let head = journal.durableHead
        guard head.seq > checkpointedSeq, let index = retryIndex else { return }
        let pending: RetryIndex.PendingCheckpoint
        do { pending = try index.beginCheckpoint(coveredThrough: head.seq) } catch {
            log("trades: checkpoint at seq \(head.seq) failed: \(error); the next start replays from \(checkpointedSeq + 1)")
            return
        }
        let state = config.state.map { (name: $0.name, bytes: $0.take()) }
        let directory = dataDirectory + "/journal"
        checkpointInFlight = true
        let done = DispatchSemaphore(value: 0)
        checkpointDone = done
        Thread.detachNewThread { [self] in
            _ = tw_set_thread_name("tw-trade-checkpt")
            // Behind the journal's commits at the disk (where the I/O scheduler honours classes).
            _ = tw_set_thread_io_idle()
            defer { done.signal() }
            var outcome = CheckpointOutcome(index: pending)
            do throws(JournalError) {
                do throws(JournalError) {
                    try paced ? pending.syncPagesPaced(hurry: { self.checkpointHurry.load(ordering: .relaxed) }) : pending.syncPages()
                } catch {
                    outcome.pagesFailure = error
                    throw error
                }
                try pending.writeHeader()
                outcome.headerWritten = true
                if let state {
                    try StateCheckpoint.save(journalDirectory: directory, name: state.name, seq: head.seq, hash: head.hash, state: state.bytes)
                }
            } catch {
                outcome.failure = "\(error)"
            }
            checkpointOutcome.withLock { $0 = outcome }
        }
    }

    /// Records the checkpoint that finished, if one did (the service thread's).
    private func collectCheckpoint() {
        guard checkpointInFlight, let outcome = checkpointOutcome.withLock({ o -> CheckpointOutcome? in defer { o = nil }; return o }) else { return }
        checkpointInFlight = false
        if let e = outcome.pagesFailure { retryIndex?.checkpointFailed(e) }
        if outcome.headerWritten { retryIndex?.checkpointCommitted(outcome.index) }
        if let failure = outcome.failure {
            log("trades: checkpoint at seq \(outcome.index.seq) failed: \(failure); the next start replays from \(checkpointedSeq + 1)")
        } else {
            checkpointedSeq = outcome.index.seq
        }
    }

    /// Waits for the checkpoint in flight, if any, and records it (before recovery reads or cuts what it writes,
    /// and at the stop).
    func waitForCheckpoint() {
        guard checkpointInFlight else { return }
        checkpointHurry.store(true, ordering: .relaxed)
        checkpointDone.wait()
        checkpointHurry.store(false, ordering: .relaxed)
        collectCheckpoint()
    }

    /// Stops serving: acknowledges what became durable, closes the journal, the sockets and the ZAP handler.
    public func stop() {
        guard running else { return }
        running = false
        stopping.store(true, ordering: .releasing)
        done.wait()
        if let r = replicated {
            r.replicator.close()
            r.wakeSocket.withLock { $0.close() }
        }
        if let journal, journal.failure == nil, replicated.map({ $0.applied == journal.durableSequence }) ?? true {
            waitForCheckpoint()
            checkpoint(journal, paced: false)
        }
        waitForCheckpoint()
        journal?.close()
        zap?.stop()
        router?.close(); wakeReceiver?.close(); wakeSender?.close()
    }

    // MARK: Serving

    private func serve() {
        guard let router, let wake = wakeReceiver else { return }
        let items: [(ZMQSocket, ZMQ.PollEvents)] = [(router, .readable), (wake, .readable)]
        var nextProbe: Int64 = 0, nextDamageCheck: Int64 = 0
        var failed = false
        while !stopping.load(ordering: .acquiring) {
            let ready: [ZMQ.PollEvents]
            do { ready = try ZMQ.poll(items, timeoutMs: 50) } catch {
                if error.isInterrupted { continue }
                break
            }
            guard let journal else { break }
            if ready[1].contains(.readable) { while (try? wake.receive(dontWait: true)) ?? nil != nil {} }
            if ready[0].contains(.readable) { receiveRequests(router, journal) }
            let now = Nanos.now().rawValue
            if replicated != nil {
                replicationStep(router, journal, now: now)
                // The verifier's findings, looked at once a second (it takes the journal's lock).
                if now >= nextDamageCheck {
                    nextDamageCheck = now + 1_000_000_000
                    if let damage = journal.backgroundDamage, replicated?.damage == nil, replicated?.rollBackTo == nil {
                        repairFromLog(damage)
                    }
                }
                if let keep = replicated?.rollBackTo, now >= replicated!.nextRollBack { rollBackReplicated(to: keep) }
            } else {
                acknowledgeDurable(router, journal)
            }
            if checkpointInFlight { collectCheckpoint() }
            let settled = replicated.map { $0.applied == journal.durableSequence } ?? (pendingHead == pending.count)
            if journal.failure == nil && settled && now >= nextCheckpoint {
                nextCheckpoint = now + config.checkpointIntervalNanos
                checkpoint(journal)
            }
            if let failure = journal.failure {
                if !failed {
                    failed = true
                    count { $0.journalFailures += 1 }
                    log("journal: stopped on \(failure); trades are refused until writes work again (probed every second)")
                }
                if pendingHead == pending.count && now >= nextProbe {
                    nextProbe = now + TradeService.resumeProbeNanos
                    if resumeJournal(after: failure) {
                        failed = false
                        if let reopened = self.journal { replicationResumed(reopened) }
                    }
                }
            }
        }
        // Answer what is already in flight before leaving.
        guard let journal else { return }
        if replicated != nil {
            try? journal.waitDurable(replicated!.applied)
            replicationStep(router, journal, now: Nanos.now().rawValue)
            return
        }
        if let last = pending[pendingHead...].map(\.lastSeq).max() { try? journal.waitDurable(last) }
        acknowledgeDurable(router, journal)
    }

    /// After a failure (a full disk): once a probe write and sync succeed in the journal's directory, reopens the
    /// journal, whose recovery checks that the file ends at the last durable record (a failed commit was cut back
    /// and nothing past it was acknowledged), and rebuilds `state` from the last checkpoint and the journal: the
    /// pre-trade check had applied trades that then failed to be journaled. Returns whether trading resumed.
    private func resumeJournal(after failure: JournalError) -> Bool {
        let directory = dataDirectory + "/journal"
        guard let index = retryIndex, Journal.probeWritable(directory: directory) == nil else { return false }
        journal?.close()
        do {
            let reopened = try recover(index)
            journal = reopened
            count { $0.journalResumes += 1 }
            log("journal: writes work again; resumed at seq \(reopened.durableSequence) after \(failure)")
            return true
        } catch {
            log("journal: reopening after \(failure) failed: \(error); trying again in a second")
            return false
        }
    }

    /// Where a request message's replies go: its envelope (routing id, and a REQ client's empty delimiter), and
    /// whether its trades came packed in one frame (then the replies go back packed too).
    struct ReplyRoute {
        var envelope: [[UInt8]]
        var packed: Bool
    }

    /// A request message waiting for durability: one reply slot per SUBMIT frame, in order.
    struct PendingMessage {
        var route: ReplyRoute
        var replies: [TradeReply?]
        var waiting: [(slot: Int, request: TradeRequest, seq: UInt64, duplicate: Bool)]
        var lastSeq: UInt64
        var received: Nanos
    }

    private func receiveRequests(_ router: ZMQSocket, _ journal: Journal) {
        for _ in 0..<4096 {
            var frames: [[UInt8]] = []
            var part = ZMQMessage()
            do {
                guard try part.receive(from: router, dontWait: true) else { return }
                frames.append(part.bytes)
                while part.more {
                    part = ZMQMessage()
                    _ = try part.receive(from: router)
                    frames.append(part.bytes)
                }
            } catch { return }
            // Frames: routing id, [empty delimiter from a REQ client], one or more SUBMIT frames or one packed frame.
            let envelopeCount = frames.count >= 3 && frames[1].isEmpty ? 2 : 1
            guard frames.count > envelopeCount else { continue }
            var route = ReplyRoute(envelope: Array(frames[..<envelopeCount]), packed: false)
            var bodies = frames[envelopeCount...]
            if bodies.count == 1, bodies.first!.first == TradeWire.submitPacked {
                route.packed = true
                do throws(RejectReason) {
                    bodies = try TradeWire.unpack(bodies.first!, type: TradeWire.submitPacked)[...]
                } catch {
                    // Nothing in it can be trusted to be one trade: one REJECT answers the whole message.
                    count { $0.malformed += 1; $0.rejected += 1 }
                    reply(router, route, [.reject(clientOrderID: "", error)])
                    continue
                }
            }
            handle(route: route, trader: part.metadata("User-Id") ?? "", bodies: bodies, router, journal)
        }
    }

    func reply(_ router: ZMQSocket, _ route: ReplyRoute, _ replies: [TradeReply]) {
        let frames = replies.map(TradeWire.encodeReply)
        _ = try? router.sendMultipart(route.envelope + (route.packed ? [TradeWire.pack(TradeWire.repliesPacked, frames)] : frames),
                                      dontWait: true)
    }

    /// Judges every SUBMIT frame of one message in order; answers at once when none waits for the disk.
    private func handle(route: ReplyRoute, trader: String, bodies: ArraySlice<[UInt8]>, _ router: ZMQSocket, _ journal: Journal) {
        if replicated != nil { return handleReplicated(route: route, trader: trader, bodies: bodies, router, journal) }
        let received = Nanos.now()
        var message = PendingMessage(route: route, replies: Array(repeating: nil, count: bodies.count),
                                     waiting: [], lastSeq: 0, received: received)
        var delta = Counters()
        // Counted before any reply is sent, so a client that sees its answer also sees it counted.
        func settle() {
            count {
                $0.rejected += delta.rejected; $0.malformed += delta.malformed; $0.duplicates += delta.duplicates
                $0.journalReadFailures += delta.journalReadFailures
            }
        }
        if refuseOversized(route, bodies.count, router) { return }
        let lookups = journal.lookups()
        for (slot, bytes) in bodies.enumerated() {
            guard let request = Self.decode(bytes, trader: trader, &delta, refused: { message.replies[slot] = $0 }) else { continue }
            func reject(_ reason: RejectReason) {
                delta.rejected += 1
                message.replies[slot] = .reject(clientOrderID: request.clientOrderID, reason)
            }
            let key = RetryKey(trader: trader, clientOrderID: request.clientOrderID)
            if let (seq, original) = inFlight[key] {
                if let why = Self.difference(original, request, seq: seq) { reject(why); continue }
                delta.duplicates += 1
                message.waiting.append((slot, request, seq, true))
                message.lastSeq = max(message.lastSeq, seq)
                continue
            }
            let journaled: (seq: UInt64, trade: TradeRequest)?
            do { journaled = try journaledTrade(of: key, journal, lookups: lookups) } catch {
                delta.journalReadFailures += 1
                log("trades: \(trader)'s id \(request.clientOrderID) refused: its journal record cannot be read back: \(error)")
                reject(RejectReason(.journalUnavailable, "cannot tell whether id \(request.clientOrderID) was journaled before: \(error)"))
                continue
            }
            if let (seq, original) = journaled {
                if let why = Self.difference(original, request, seq: seq) { reject(why); continue }
                delta.duplicates += 1
                message.replies[slot] = .ack(clientOrderID: request.clientOrderID, seq: seq, duplicate: true)
                continue
            }
            if let check = config.preTradeCheck, let reason = check(request) { reject(reason); continue }
            let seq: UInt64
            do { seq = try journal.append(TradeWire.encodeRecord(request), eventTime: received) } catch {
                reject(RejectReason(.journalUnavailable, "\(error)")); continue
            }
            inFlight[key] = (seq, request)
            do { _ = try retryIndex?.insert(RetryIndex.key(trader: trader, clientOrderID: request.clientOrderID), seq: seq) } catch {
                // Past the index's hard limit with no room to grow: the journal replay after the last checkpoint
                // restores the entry at the next start; until then a retry finds it in flight or not at all.
                log("trades: retry index insert failed: \(error)")
            }
            message.waiting.append((slot, request, seq, false))
            message.lastSeq = max(message.lastSeq, seq)
        }
        settle()
        if message.waiting.isEmpty {
            reply(router, route, message.replies.map { $0! })
        } else {
            pending.append(message)
        }
    }

    /// A message with more SUBMIT frames than allowed is refused whole (returns true when it was).
    func refuseOversized(_ route: ReplyRoute, _ count: Int, _ router: ZMQSocket) -> Bool {
        guard count > TradeWire.maxTradesPerMessage else { return false }
        self.count { $0.malformed += count; $0.rejected += count }
        let why = RejectReason(.malformed, "a message carries at most \(TradeWire.maxTradesPerMessage) trades, this one \(count)")
        reply(router, route, Array(repeating: .reject(clientOrderID: "", why), count: count))
        return true
    }

    /// One SUBMIT frame as a valid request of `trader`; nil after handing `refused` the REJECT that answers it
    /// instead (counted in `delta`).
    static func decode(_ bytes: [UInt8], trader: String, _ delta: inout Counters, refused: (TradeReply) -> Void) -> TradeRequest? {
        func refuse(_ id: String, _ why: RejectReason) -> TradeRequest? {
            delta.rejected += 1
            if why.code == .malformed { delta.malformed += 1 }
            refused(.reject(clientOrderID: id, why))
            return nil
        }
        var request: TradeRequest
        do { request = try TradeWire.decodeRequest(bytes) } catch { return refuse("", error) }
        guard !trader.isEmpty else { return refuse(request.clientOrderID, RejectReason(.unauthenticated, "no authenticated trader")) }
        request.trader = trader
        if let bad = request.validationError() { return refuse(request.clientOrderID, bad) }
        return request
    }

    /// The durable sequence `key` was journaled under and that trade, if any: the retry index's candidates, each
    /// checked against its journal record (trader and client order id).
    /// - Throws: when a candidate's record cannot be read (damage): the caller refuses rather than guess.
    /// - Parameter lookups: the journal reads of the message being handled, which share their reads (a resend's
    ///   retries ask for records close together); nil: a read of its own.
    func journaledTrade(of key: RetryKey, _ journal: Journal, lookups: JournalLookups? = nil) throws -> (seq: UInt64, trade: TradeRequest)? {
        guard let index = retryIndex else { return nil }
        let durable = journal.durableSequence
        var found: TradeRequest?
        let seq = try index.lookup(RetryIndex.key(trader: key.trader, clientOrderID: key.clientOrderID)) { seq throws in
            guard seq <= durable else { return false }
            let record: JournalRecord
            do { record = try lookups?.record(seq) ?? journal.record(seq) } catch JournalError.noSuchRecord { return false }
            guard let t = TradeWire.decodeRecord(record.payload), t.trader == key.trader, t.clientOrderID == key.clientOrderID else { return false }
            found = t
            return true
        }
        guard let seq, let found else { return nil }
        return (seq, found)
    }

    /// Why a retry of an id is not the trade first journaled under it (nil when it is): an id names one trade.
    static func difference(_ original: TradeRequest, _ retry: TradeRequest, seq: UInt64) -> RejectReason? {
        var fields: [String] = []
        if original.desk != retry.desk { fields.append("desk \(original.desk)") }
        if original.symbol != retry.symbol { fields.append("symbol \(original.symbol)") }
        if original.side != retry.side { fields.append("side \(original.side)") }
        if original.quantity != retry.quantity { fields.append("quantity \(original.quantity)") }
        if original.price != retry.price { fields.append("price \(original.price)") }
        guard !fields.isEmpty else { return nil }
        return RejectReason(.idInUse, "id \(retry.clientOrderID) is trade seq \(seq) with \(fields.joined(separator: ", ")): a different trade needs a new id")
    }

    /// Notes a trade now durable for the next `publishDurable()`: its event (known at `known`, when a pass found it
    /// durable), desk and symbol.
    func noteDurable(_ r: TradeRequest, seq: UInt64, received: Nanos, known: Nanos) {
        durableTrades.append(DurableTrade(
            event: Event(subjectID: 0, kind: .trade, flags: r.side.rawValue, eventTime: received, knownTime: known,
                         seq: seq, a: r.price.e8, b: r.quantity.e8, c: Int64(bitPattern: seq)),
            desk: r.desk, symbol: r.symbol))
    }

    /// Hands the trades noted durable to `publish` in one call.
    func publishDurable() {
        guard !durableTrades.isEmpty else { return }
        publish(durableTrades)
        durableTrades.removeAll(keepingCapacity: true)
    }

    /// Answers every message, in arrival order, whose trades are all durable; publishes the new trades first.
    private func acknowledgeDurable(_ router: ZMQSocket, _ journal: Journal) {
        // The failure first: once it is seen the durable sequence read after it is final, so what is refused
        // below is never durable. (Read the other way round, a commit published between the two reads would have
        // its trades refused although journaled.)
        let failure = journal.failure
        let durable = journal.durableSequence
        // Counted before each reply is sent, so a client that sees its acknowledgement also sees it counted.
        func answer(_ m: PendingMessage, failure: JournalError? = nil) {
            var accepted = 0, rejected = 0
            var replies = m.replies
            for w in m.waiting {
                let r = w.request
                if w.seq <= durable {
                    if !w.duplicate {
                        inFlight[RetryKey(trader: r.trader, clientOrderID: r.clientOrderID)] = nil
                        accepted += 1
                    }
                    replies[w.slot] = .ack(clientOrderID: r.clientOrderID, seq: w.seq, duplicate: w.duplicate)
                } else if let failure {
                    // Nothing after the last durable record was written: refuse it, and forget its id so a retry
                    // is judged anew.
                    if !w.duplicate { inFlight[RetryKey(trader: r.trader, clientOrderID: r.clientOrderID)] = nil }
                    rejected += 1
                    replies[w.slot] = .reject(clientOrderID: r.clientOrderID, RejectReason(.journalUnavailable, "\(failure)"))
                }
            }
            if accepted + rejected > 0 { count { $0.accepted += accepted; $0.rejected += rejected } }
            reply(router, m.route, replies.map { $0! })
        }
        var answerable = pendingHead
        while answerable < pending.count, pending[answerable].lastSeq <= durable { answerable += 1 }
        // The new trades among them are published first (a client that sees its acknowledgement finds its trade
        // handed on), all in one call.
        let published = failure == nil ? pending[pendingHead..<answerable] : pending[pendingHead...]
        let known = Nanos.now()   // when this pass found them durable
        for m in published {
            for w in m.waiting where w.seq <= durable && !w.duplicate { noteDurable(w.request, seq: w.seq, received: m.received, known: known) }
        }
        publishDurable()
        while pendingHead < answerable {
            answer(pending[pendingHead])
            pendingHead += 1
        }
        if pendingHead == pending.count {
            pending.removeAll(keepingCapacity: true); pendingHead = 0
        } else if pendingHead >= 1024 && pendingHead * 2 >= pending.count {
            // Under a steady stream the queue may never drain to empty: drop the answered front now and then.
            pending.removeFirst(pendingHead); pendingHead = 0
        }
        if pendingHead < pending.count, let failure {
            for m in pending[pendingHead...] { answer(m, failure: failure) }
            pending.removeAll(); pendingHead = 0
        }
    }
}

/// Answers ZAP 1.0 requests (RFC 27) on `inproc://zeromq.zap.01`: admits configured CURVE public keys, naming
/// the trader in the User-Id, and logs every refusal.
final class ZAPHandler: @unchecked Sendable {
    static let endpoint = "inproc://zeromq.zap.01"
    private let context: ZMQContext
    private let admitted: [String: String]   // Z85 public key → trader
    private let log: @Sendable (String) -> Void
    private var socket: ZMQSocket?
    private let stopping = Atomic<Bool>(false)
    private let done = DispatchSemaphore(value: 0)
    private let refusedCount = Atomic<Int>(0)
    /// Refusals are logged at most `logBurst` a window of `logWindowNanos`; the rest are counted and summed up in
    /// the next line logged (a stranger hammering the port must not flood the log). The serving thread's.
    static let logBurst = 10, logWindowNanos: Int64 = 10_000_000_000
    private var logWindowStart: Int64 = 0
    private var loggedInWindow = 0
    private var unlogged = 0

    init(context: ZMQContext, admitted: [String: String], log: @escaping @Sendable (String) -> Void) {
        self.context = context; self.admitted = admitted; self.log = log
    }

    var refused: Int { refusedCount.load(ordering: .relaxed) }

    func start() throws {
        let s = try context.socket(.rep)
        try s.setReceiveTimeout(milliseconds: 50)
        try s.bind(ZAPHandler.endpoint)
        socket = s
        Thread.detachNewThread { [self] in
            self.serve(s)
            self.done.signal()
        }
    }

    func stop() {
        guard let s = socket else { return }
        stopping.store(true, ordering: .releasing)
        done.wait()
        s.close()
        socket = nil
    }

    private func logRefusal(_ line: String) {
        let now = Nanos.now().rawValue
        if now - logWindowStart >= Self.logWindowNanos { logWindowStart = now; loggedInWindow = 0 }
        guard loggedInWindow < Self.logBurst else { unlogged += 1; return }
        loggedInWindow += 1
        log(unlogged == 0 ? line : line + " (and \(unlogged) refusals not logged before it)")
        unlogged = 0
    }

    private func serve(_ s: ZMQSocket) {
        while !stopping.load(ordering: .acquiring) {
            guard let frames = try? s.receiveMultipart(), frames.count >= 6 else { continue }
            let requestID = frames[1]
            let address = String(decoding: frames[3], as: UTF8.self)
            let mechanism = String(decoding: frames[5], as: UTF8.self)
            var status = "400", text = "unknown key", user = ""
            if mechanism == "CURVE", frames.count >= 7, let key = Z85.encode(frames[6]) {
                if let trader = admitted[key] {
                    status = "200"; text = "OK"; user = trader
                } else {
                    refusedCount.add(1, ordering: .relaxed)
                    logRefusal("trades: refused CURVE key \(key) from \(address)")
                }
            } else {
                refusedCount.add(1, ordering: .relaxed)
                logRefusal("trades: refused \(mechanism) connection from \(address): CURVE required")
            }
            _ = try? s.sendMultipart([Array("1.0".utf8), requestID, Array(status.utf8), Array(text.utf8), Array(user.utf8), []])
        }
    }
}
