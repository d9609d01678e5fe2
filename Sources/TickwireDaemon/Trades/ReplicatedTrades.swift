import Foundation
import TickwireCore
import TickwireJournal
import TickwireNATS
import TickwireRing
import TickwireZMQ

/// Replicated trading's state, kept by the trade service's thread (docs/ARCHITECTURE.md, "Replicated trades").
///
/// The design is the one exchanges use: deterministic replicas behind one sequencer. The sequencer is a
/// JetStream stream replicated on a three-server cluster. A daemon that takes a submission makes the checks that
/// need the live market and puts the request, with the mark it used, into the stream (`Nats-Msg-Id` = trader and
/// client order id, so a retry through either daemon is one message). Every daemon applies the stream in its
/// order: the checks that depend on positions, from the log alone, then one decision record in its own journal,
/// at the stream's sequence, timed by the message's own receive time. So both journals hold the same records and
/// the same hash chain. The taking daemon answers once its own journal holds the record on disk: an
/// acknowledgement means "in the memory of a quorum of the cluster, and fsynced on this daemon".
final class ReplicatedState {
    let replicator: TradeReplicator
    let wakeSocket: Locked<ZMQSocket>
    /// The last sequence of the log applied to the journal (journal sequence = log sequence).
    var applied: UInt64
    /// Set once the stream is there and this daemon has checked that its journal agrees with it: the log's last
    /// sequence then, which must be applied before submissions are taken.
    var caughtUpAt: UInt64?
    /// Why replicated trading cannot go on here (the journal and the log disagree): every submission is refused
    /// with it until an operator acts.
    var broken: String?
    var nextSetupAttempt: Int64 = 0
    var setupPending = false
    var lastSetupError = ""
    /// Counts the journal's reopenings (a rollback, a full disk back): what a consumer or a fill read in an
    /// earlier epoch is dropped, since the log may have changed its mind since (a rollback that applied an old
    /// consumer's queued deliveries would write the log's old tail back into the journal).
    var epoch: UInt64 = 0
    /// A stalled consumer is restarted: the applied sequence and the time it was last seen to move.
    var progressCheck: (applied: UInt64, at: Int64) = (0, 0)
    /// The highest sequence the log is known to hold (from acknowledgements and asks), the last time a consumer
    /// was restarted, the last time the log's end was asked, and the highest sequence a fill was asked for.
    var logKnownThrough: UInt64 = 0
    var lastRestart: Int64 = 0, lastAsk: Int64 = 0
    var fillAskedThrough: UInt64 = 0
    /// A consumer is being made, or a fill read, on the replicator's queue: no second one is asked meanwhile
    /// (each may wait seconds for a cluster that is electing).
    var consumerPending = false, fillPending = false
    /// Submissions waiting for the log's answer (by message id) or for their record to be durable (by sequence).
    var byMsgId: [String: [Slot]] = [:]
    var bySeq: [UInt64: [Slot]] = [:]
    /// Every sequence through this one whose waiting slots were answered (≤ applied and durable).
    var resolvedThrough: UInt64
    /// Messages with slots still open, oldest first (for the acknowledgement timeout).
    var open: [Waiting] = []
    var openHead = 0
    /// Decisions applied recently, to answer without reading the journal back.
    var decisions = RecentDecisions()
    /// Accepted trades not yet durable, published (and their ids taken out of flight) once durable.
    var unpublished: [(seq: UInt64, request: TradeRequest, received: Nanos)] = []

    /// Reading back what was applied, to compare with the log (docs/ARCHITECTURE.md, "When the log changes its
    /// mind"): the range being read (and a token telling its answers from an earlier check's), whether it is the
    /// check a start waits for, the lowest sequence a check is wanted from, and when a failed one is tried again.
    var checking: (range: ClosedRange<UInt64>, token: UInt64, atStart: Bool)?
    var checkToken: UInt64 = 0
    var checkWanted: UInt64?
    var nextCheck: Int64 = 0
    /// Why a start's check is needed (the journal's end disagrees with the log, or is past it): the reason given
    /// if no agreeing record is found before the disagreement.
    var startProblem = ""
    /// The log's last sequence when this start's check began (consuming starts from the journal's end then).
    var startLast: UInt64 = 0
    /// The server leading the log as last asked, and how far this daemon had applied then; how far it had
    /// applied when the log's end was last asked.
    var leader: (name: String, applied: UInt64)?
    var appliedAtAsk: UInt64 = 0
    /// Set when the journal must be cut back to this sequence (the log no longer holds what follows it there):
    /// the service loop does it between steps.
    var rollBackTo: UInt64?
    /// A rollback that could not keep its cut trades (a full disk) is tried again from then; nothing is applied from
    /// the log until it is done. Whether that was logged.
    var nextRollBack: Int64 = 0
    var rollBackWaiting = false
    /// After a rollback, once caught up again: the whole range from the cut on is read back from the stream's
    /// leader. The log applied again may have come from a replica's other history for a while (a consumer on a
    /// stale replica) and agree again at its tail, where the spot read looks.
    var verifyFrom: UInt64?
    /// Where the record after `rollBackTo` lies damaged, when the rollback repairs damage the journal's verifier
    /// found (the log holds every record after it: nothing goes back into the log).
    var damage: JournalCorruption?
    /// Trades accepted in records a rollback cut, owed to the log until the journal holds them again, and when
    /// they are next looked at.
    var putBacks: PutBacks
    var nextPutBack: Int64 = 0
    /// Answers that wait for a check because the journal looked unlike the log at their sequence.
    var held: [(slot: Slot, seq: UInt64)] = []

    /// The last `capacity` decisions applied, by sequence: a slot per sequence modulo the capacity, so recording
    /// one costs a store and no hashing, and older ones fall out by themselves (they are read from the journal).
    struct RecentDecisions {
        static let capacity = 1 << 15
        private var slots = [(seq: UInt64, decision: TradeWire.Decision, request: TradeRequest)?](repeating: nil, count: capacity)

        subscript(seq: UInt64) -> (TradeWire.Decision, TradeRequest)? {
            guard let s = slots[Int(seq & UInt64(Self.capacity - 1))], s.seq == seq else { return nil }
            return (s.decision, s.request)
        }

        mutating func record(_ seq: UInt64, _ decision: TradeWire.Decision, _ request: TradeRequest) {
            slots[Int(seq & UInt64(Self.capacity - 1))] = (seq, decision, request)
        }

        /// Drops every decision after `seq` (the journal was cut back to it).
        mutating func forget(after seq: UInt64) {
            for i in slots.indices where (slots[i]?.seq ?? 0) > seq { slots[i] = nil }
        }
    }

    init(replicator: TradeReplicator, wakeSocket: Locked<ZMQSocket>, applied: UInt64) {
        self.replicator = replicator
        self.wakeSocket = wakeSocket
        self.applied = applied
        resolvedThrough = applied
        putBacks = PutBacks(resendNanos: replicator.config.ackTimeoutMs * 1_000_000)
    }

    var ready: Bool { broken == nil && caughtUpAt.map { applied >= $0 } == true }

    /// One request message from a client: its replies, filled as each trade's outcome is known.
    final class Waiting {
        let route: TradeService.ReplyRoute
        var replies: [TradeReply?]
        var openSlots = 0
        let received: Int64
        var msgIds: [String] = []
        var clientOrderIDs: [String]
        init(route: TradeService.ReplyRoute, count: Int, received: Int64) {
            self.route = route
            replies = Array(repeating: nil, count: count)
            clientOrderIDs = Array(repeating: "", count: count)
            self.received = received
        }
    }

    struct Slot {
        let message: Waiting
        let index: Int
        let request: TradeRequest
        /// The log already held this id when it was published (a retry).
        var logDuplicate: Bool
    }

    /// No progress for this long with the log known to hold more: the consumer is restarted (at most once a
    /// second); with nothing known, the log's end is asked every `askNanos`.
    static let stallNanos: Int64 = 300_000_000
    static let restartNanos: Int64 = 1_000_000_000
    static let askNanos: Int64 = 1_000_000_000
    /// The most messages one stall's direct read asks for.
    static let fillBatch: UInt64 = 4_096
    /// Records read back after a failover, a stalled consumer or a new leader (the log's messages they were
    /// applied from are compared by sequence); at a start, widened up to `maxCheckBack` to find an agreeing one.
    static let checkWindow: UInt64 = 1_024
    static let maxCheckBack: UInt64 = 65_536
}

extension TradeService {
    static func msgId(_ r: TradeRequest) -> String { r.trader + "/" + r.clientOrderID }

    // MARK: Taking submissions

    /// Judges a client's message in replicated trading: what can be answered at once is, the rest goes to the log.
    func handleReplicated(route: ReplyRoute, trader: String, bodies: ArraySlice<[UInt8]>, _ router: ZMQSocket, _ journal: Journal) {
        guard let state = replicated else { return }
        if refuseOversized(route, bodies.count, router) { return }
        let received = Nanos.now()
        let message = ReplicatedState.Waiting(route: route, count: bodies.count, received: received.rawValue)
        var delta = Counters()
        let lookups = journal.lookups()
        for (index, bytes) in bodies.enumerated() {
            guard let request = Self.decode(bytes, trader: trader, &delta, refused: { message.replies[index] = $0 }) else { continue }
            func reject(_ reason: RejectReason) {
                delta.rejected += 1
                message.replies[index] = .reject(clientOrderID: request.clientOrderID, reason)
            }
            message.clientOrderIDs[index] = request.clientOrderID
            if let broken = state.broken { reject(RejectReason(.replicationUnavailable, "not recorded: \(broken)")); continue }
            if let failure = journal.failure {
                reject(RejectReason(.replicationUnavailable, "not recorded: this daemon's journal stopped (\(failure)); send it through the other daemon"))
                continue
            }
            guard state.ready else {
                let why = state.caughtUpAt.map { "this daemon is catching up with the replicated log (at \(state.applied) of \($0))" }
                    ?? "the replicated log is not reachable (\(state.lastSetupError.isEmpty ? "connecting" : state.lastSetupError))"
                reject(RejectReason(.replicationUnavailable, "not recorded: \(why); try again, or through the other daemon"))
                continue
            }
            let key = RetryKey(trader: trader, clientOrderID: request.clientOrderID)
            if let (seq, original) = inFlight[key] {
                if let why = Self.difference(original, request, seq: seq) { reject(why); continue }
                state.bySeq[seq, default: []].append(.init(message: message, index: index, request: request, logDuplicate: true))
                message.openSlots += 1
                continue
            }
            do {
                if let (seq, original) = try journaledTrade(of: key, journal, lookups: lookups) {
                    if let why = Self.difference(original, request, seq: seq) { reject(why); continue }
                    delta.duplicates += 1
                    message.replies[index] = .ack(clientOrderID: request.clientOrderID, seq: seq, duplicate: true)
                    continue
                }
            } catch {
                reject(RejectReason(.journalUnavailable, "cannot tell whether id \(request.clientOrderID) was journaled before: \(error)"))
                continue
            }
            var mark: Int64 = 0
            if let check = config.marketCheck {
                let (why, m) = check(request)
                if let why { reject(why); continue }
                mark = m
            }
            let id = Self.msgId(request)
            let bytes = TradeWire.encodeSequenced(request, receivedNanos: received.rawValue, markE8: mark, origin: state.replicator.config.node)
            do { try state.replicator.publish(bytes, msgId: id) } catch {
                reject(RejectReason(.replicationUnavailable, "not recorded: \(error)"))
                continue
            }
            state.byMsgId[id, default: []].append(.init(message: message, index: index, request: request, logDuplicate: false))
            message.msgIds.append(id)
            message.openSlots += 1
        }
        count { $0.rejected += delta.rejected; $0.malformed += delta.malformed; $0.duplicates += delta.duplicates }
        if message.openSlots == 0 {
            reply(router, route, message.replies.map { $0! })
        } else {
            state.open.append(message)
        }
    }

    // MARK: The service thread's step

    /// Sets the log up when it is not, applies what the log delivered, answers what is durable, times out what
    /// waited too long.
    func replicationStep(_ router: ZMQSocket, _ journal: Journal, now: Int64) {
        guard let state = replicated else { return }
        if state.caughtUpAt == nil && !state.setupPending && state.checking == nil && state.rollBackTo == nil && state.broken == nil
            && journal.failure == nil && now >= state.nextSetupAttempt {
            state.setupPending = true
            state.replicator.setUp(journalEnd: journal.durableSequence)
        }
        for item in state.replicator.drain() {
            switch item {
            case .published(let id, let result): published(id, result, state, router, journal)
            case .logged(let seq, let time, let bytes, let epoch):
                // Read before the journal was last reopened (a rollback): the log as it was then, not now.
                if epoch == state.epoch { apply(seq, time, bytes, state, journal) }
            case .streamReady(let last, let logged): streamReady(last: last, logged: logged, state, journal, now: now)
            case .lastSequence(let last, let leader):
                state.logKnownThrough = max(state.logKnownThrough, last)
                // The log ends before what this daemon had applied when it asked: it lost messages.
                if last < state.appliedAtAsk { wantCheck(from: last, state) }
                if let leader {
                    // A new leader may not hold the tail the old one delivered: check what was applied since
                    // the old one was last seen.
                    if let was = state.leader, was.name != leader { wantCheck(from: was.applied, state) }
                    state.leader = (leader, state.applied)
                }
            case .checked(let seq, let message, let token): checked(seq, message, token, state, journal)
            case .spot(let seq, let message): spotted(seq, message, state, journal)
            case .checkDone(let range, let complete, let token): checkDone(range, complete: complete, token, state, router, journal, now: now)
            case .consumerDone: state.consumerPending = false
            case .fillDone: state.fillPending = false
            case .setupFailed(let text):
                if text != state.lastSetupError { log("trades: replicated log not ready: \(text); retrying every second") }
                state.lastSetupError = text
                if state.caughtUpAt == nil {
                    state.setupPending = false
                    state.nextSetupAttempt = now + 1_000_000_000
                }
            }
        }
        let durable = min(journal.durableSequence, state.applied)
        // Publish the trades now durable, and let their ids out of flight (the retry index holds them now).
        var published = 0
        let known = Nanos.now()
        while published < state.unpublished.count, state.unpublished[published].seq <= durable {
            let (seq, r, received) = state.unpublished[published]
            inFlight[RetryKey(trader: r.trader, clientOrderID: r.clientOrderID)] = nil
            noteDurable(r, seq: seq, received: received, known: known)
            published += 1
        }
        if published > 0 { state.unpublished.removeFirst(published) }
        publishDurable()
        while state.resolvedThrough < durable {
            state.resolvedThrough += 1
            for slot in state.bySeq.removeValue(forKey: state.resolvedThrough) ?? [] {
                resolve(slot, at: state.resolvedThrough, state, router, journal)
            }
        }
        expire(state, router, now: now)
        watchProgress(state, journal, now: now)
        // (Once a record after the cut is applied: a check that cannot start yet would hold the spot reads back.)
        if let from = state.verifyFrom, state.ready, state.checking == nil, state.checkWanted == nil, state.rollBackTo == nil,
           min(state.applied, journal.durableSequence) >= from {
            state.verifyFrom = nil
            log("trades: caught up after the rollback: checking \(from)…\(min(state.applied, journal.durableSequence)) against the stream's leader")
            state.checkWanted = from
        }
        startCheck(state, journal, now: now)
        if !state.putBacks.isEmpty && state.ready { putBackStep(state, journal, now: now) }
        let status = ReplicationStatus(node: state.replicator.config.node, cluster: state.replicator.connectedURL,
                                       applied: state.applied, logKnownThrough: state.logKnownThrough,
                                       ready: state.ready, broken: state.broken)
        replicationStatusBox.withLock { if $0 != status { $0 = status } }
    }

    /// The stream is there. A journal whose last record is the log's message at that sequence starts consuming
    /// after it (and checks the records before it in the background); one whose end disagrees with the log, or
    /// is past it, is read back against the log first, to find the last record they agree on.
    private func streamReady(last: UInt64, logged: JetStream.StoredMessage?, _ state: ReplicatedState, _ journal: Journal, now: Int64) {
        state.setupPending = false
        guard state.caughtUpAt == nil, state.broken == nil, state.checking == nil, journal.failure == nil else { return }
        let mine = journal.durableSequence
        state.logKnownThrough = max(state.logKnownThrough, last)
        if mine > last {
            state.startProblem = "the journal holds \(mine) records but the replicated log \(state.replicator.config.stream) only \(last): the log was lost or is another one"
        } else if mine > 0 {
            do {
                guard let logged, logged.sequence == mine else { state.nextSetupAttempt = now; return }
                guard let why = Self.disagreement(record: try journal.record(mine), logged: logged.bytes, time: logged.timestampNanos) else {
                    beginConsuming(after: mine, last: last, state, now: now)
                    wantCheck(from: mine, state)
                    return
                }
                state.startProblem = why
            } catch {
                stop("cannot read journal record \(mine) to check it against the replicated log: \(error)", state)
                return
            }
        } else {
            beginConsuming(after: 0, last: last, state, now: now)
            return
        }
        log("trades: \(state.startProblem); reading the journal's last records back against the log")
        state.startLast = last
        check(max(1, mine - min(mine, ReplicatedState.checkWindow) + 1)...mine, atStart: true, state)
    }

    /// Starts applying the log after `mine`; submissions are taken once it has applied through `last`.
    private func beginConsuming(after mine: UInt64, last: UInt64, _ state: ReplicatedState, now: Int64) {
        state.applied = mine
        state.resolvedThrough = min(state.resolvedThrough, mine)
        state.fillAskedThrough = mine
        state.consumerPending = true
        state.replicator.consume(from: mine + 1, epoch: state.epoch)
        state.caughtUpAt = last
        state.progressCheck = (mine, now)
        state.lastSetupError = ""
        log("trades: replicated log \(state.replicator.config.stream) at \(last) on \(state.replicator.connectedURL); journal at \(mine); catching up")
    }

    private func stop(_ why: String, _ state: ReplicatedState) {
        state.broken = why
        log("trades: replicated trading STOPPED: \(why)")
    }

    // MARK: Checking what was applied against the log

    /// Asks for the records from `seq` (less the check window) to the last applied to be read back against the log.
    func wantCheck(from seq: UInt64, _ state: ReplicatedState) {
        let from = seq > ReplicatedState.checkWindow ? seq - ReplicatedState.checkWindow + 1 : 1
        state.checkWanted = min(state.checkWanted ?? from, from)
    }

    private func check(_ range: ClosedRange<UInt64>, atStart: Bool, _ state: ReplicatedState) {
        state.checkToken += 1
        state.checking = (range, state.checkToken, atStart)
        state.replicator.check(range, token: state.checkToken)
    }

    /// Starts a wanted check once consuming (it reads back durable records only).
    private func startCheck(_ state: ReplicatedState, _ journal: Journal, now: Int64) {
        guard let from = state.checkWanted, state.checking == nil, state.caughtUpAt != nil, state.broken == nil,
              state.rollBackTo == nil, journal.failure == nil, now >= state.nextCheck else { return }
        let through = min(state.applied, journal.durableSequence)
        guard from <= through else { return }   // not yet durable: asked again next step
        state.checkWanted = nil
        check(from...through, atStart: false, state)
    }

    /// One message read back: the first that is not what the journal holds at its sequence decides.
    private func checked(_ seq: UInt64, _ message: (timeNanos: Int64, bytes: [UInt8])?, _ token: UInt64, _ state: ReplicatedState,
                         _ journal: Journal) {
        guard let c = state.checking, c.token == token, c.range.contains(seq) else { return }
        let why: String?
        do {
            let record = try journal.record(seq)
            why = message.map { Self.disagreement(record: record, logged: $0.bytes, time: $0.timeNanos) }
                ?? "journal record \(seq) is not in the replicated log (it ends before it)"
        } catch {
            stop("cannot read journal record \(seq) to check it against the replicated log: \(error)", state)
            state.checking = nil
            return
        }
        guard let why else { return }
        state.checking = nil
        if seq > c.range.lowerBound {
            // The record before agrees: everything after it is applied again from the log.
            log("trades: \(why): the replicated log no longer holds what this daemon applied from \(seq) on; rolling the journal back to \(seq - 1)")
            state.rollBackTo = seq - 1
        } else if c.range.lowerBound > 1 && journal.durableSequence - c.range.lowerBound < ReplicatedState.maxCheckBack {
            let from = c.range.lowerBound > ReplicatedState.checkWindow * 4 ? c.range.lowerBound - ReplicatedState.checkWindow * 4 : 1
            check(from...c.range.lowerBound, atStart: c.atStart, state)
        } else {
            stop(c.atStart ? state.startProblem : "\(why), and so does every record checked before it", state)
        }
    }

    /// A spot read of the last record applied (once a second): a record the stream's leader does not hold there
    /// means this daemon's consumer read another history (a replica's stale tail), so what was applied is checked.
    private func spotted(_ seq: UInt64, _ message: (timeNanos: Int64, bytes: [UInt8])?, _ state: ReplicatedState, _ journal: Journal) {
        guard state.checking == nil, state.checkWanted == nil, state.rollBackTo == nil, seq <= min(state.applied, journal.durableSequence),
              let record = try? journal.record(seq) else { return }
        let why = message.map { Self.disagreement(record: record, logged: $0.bytes, time: $0.timeNanos) }
            ?? "journal record \(seq) is not in the replicated log (it ends before it)"
        guard let why else { return }
        log("trades: spot check: \(why); checking the journal against the log")
        count { $0.spotMismatches += 1 }
        wantCheck(from: seq, state)
    }

    private func checkDone(_ range: ClosedRange<UInt64>, complete: Bool, _ token: UInt64, _ state: ReplicatedState,
                           _ router: ZMQSocket, _ journal: Journal, now: Int64) {
        guard let c = state.checking, c.token == token else { return }
        state.checking = nil
        if complete { log("trades: records \(range.lowerBound)…\(range.upperBound) read back: the journal agrees with the log") }
        if !complete {
            // The cluster stopped answering (an election): the same check again in a second.
            state.nextCheck = now + 1_000_000_000
            if c.atStart { state.nextSetupAttempt = state.nextCheck } else { state.checkWanted = min(state.checkWanted ?? range.lowerBound, range.lowerBound) }
        } else if c.atStart {
            // Every record read back agrees (the log's end moved on meanwhile): consume after the journal.
            beginConsuming(after: journal.durableSequence, last: max(state.startLast, journal.durableSequence), state, now: now)
        } else if state.checkWanted == nil {
            // The journal is the log's: the answers held for the check are given from it.
            let held = state.held
            state.held.removeAll()
            for (slot, seq) in held { resolve(slot, at: seq, state, router, journal, checked: true) }
        }
    }

    /// Why a journal record is not the decision on the log's message at the same sequence (nil: it is): everything
    /// the record took from the message is compared (a decision record's times are in the message's bytes; an
    /// undecodable message's record carries the log's time for it).
    static func disagreement(record: JournalRecord, logged: [UInt8], time: Int64) -> String? {
        let seq = record.seq
        guard let d = TradeWire.decodeDecision(record.payload) else {
            return "journal record \(seq) is not a replicated decision record: this journal was not written from a replicated log"
        }
        guard let m = TradeWire.decodeSequenced(logged) else {
            // An undecodable message is recorded as refused, with no request.
            return d.request.trader.isEmpty && d.request.clientOrderID.isEmpty && record.knownTime.rawValue == time ? nil
                : "journal record \(seq) (\(d.request.trader)/\(d.request.clientOrderID)) is not the replicated log's message \(seq) (not a trade request): the journal and the log differ"
        }
        guard d.request == m.request, d.origin == m.origin, d.markE8 == m.markE8, record.eventTime.rawValue == m.receivedNanos,
              d.decision != .accepted || d.formerSeq == m.formerSeq else {
            return "journal record \(seq) (\(d.request.trader)/\(d.request.clientOrderID)) is not the replicated log's message \(seq) (\(m.request.trader)/\(m.request.clientOrderID)): the journal and the log differ"
        }
        return nil
    }

    /// Cuts the journal back to `keep` (the log no longer holds, at the sequences that follow, what this daemon
    /// applied), reopens it and applies the log again from there. The trades accepted in the cut records go back
    /// into the log under their ids: the log drops as duplicates those it still holds and takes again any it lost,
    /// so nothing acknowledged is lost (its sequence may change). They are written to `journal/putback/` before
    /// the cut, and sent until the journal holds each again; the cut records stay in `journal/quarantine/`.
    func rollBackReplicated(to keep: UInt64) {
        guard let state = replicated, let journal, let index = retryIndex else { return }
        let damage = state.damage
        state.rollBackTo = nil
        state.damage = nil
        try? journal.waitDurable(state.applied)
        let end = journal.durableSequence
        // Damage is cut without reading it: the log holds every record after it, nothing goes back.
        let saved: (file: String, messages: [[UInt8]])?
        do { saved = damage == nil ? try savePutBacks(after: keep, through: end, journal) : nil } catch {
            // Not cut: the trades would otherwise be in neither the journal nor a put-back file. Tried again every
            // second (a full disk comes back); meanwhile nothing is applied from the log, so nothing is answered.
            state.rollBackTo = keep
            state.nextRollBack = Nanos.now().rawValue + TradeService.resumeProbeNanos
            if !state.rollBackWaiting {
                state.rollBackWaiting = true
                log("trades: cannot keep the trades after \(keep) to put them back into the log (\(error)); the journal is not rolled back yet, tried again every second (nothing is applied from the log meanwhile)")
            }
            return
        }
        state.rollBackWaiting = false
        journal.close()
        let directory = dataDirectory + "/journal"
        do {
            let moved = try Journal.rollBack(directory: directory, through: keep, damage: damage)
            let reopened = try recover(index)
            self.journal = reopened
            replicationResumed(reopened)
            if let saved { state.putBacks.add(file: saved.file, messages: saved.messages) }
            state.verifyFrom = keep + 1
            for (slot, seq) in state.held { state.bySeq[seq, default: []].append(slot) }
            state.held.removeAll()
            count { $0.rollbacks += 1 }
            log("trades: journal rolled back from \(end) to \(keep) (records \(keep + 1)…\(end) kept in journal/quarantine/: \(moved.joined(separator: ", "))); \(saved?.messages.count ?? 0) accepted trade(s) from them go back into the log under their ids\(saved.map { " (journal/putback/\($0.file))" } ?? "")")
        } catch {
            stop("rolling the journal back to \(keep) failed: \(error)", state)
            if let reopened = try? recover(index) { self.journal = reopened }
        }
    }

    /// Damage the journal's verifier found in records written before this start: in a pair the log holds every
    /// record after it, so the journal is cut back to the record before the damage and the log applied again.
    func repairFromLog(_ damage: JournalCorruption) {
        guard let state = replicated, state.rollBackTo == nil, state.broken == nil else { return }
        log("trades: the journal's verifier found damage (\(damage)); the replicated log holds every record after it: rolling the journal back to \(damage.seq - 1)")
        state.rollBackTo = damage.seq - 1
        state.damage = damage
    }

    /// After the journal was reopened (a full disk came back, or a rollback): the records after its durable end
    /// are applied again from the log.
    func replicationResumed(_ journal: Journal) {
        guard let state = replicated else { return }
        state.epoch += 1
        state.fillPending = false
        state.checking = nil
        state.checkWanted = nil
        state.applied = journal.durableSequence
        state.caughtUpAt = nil
        state.setupPending = false
        state.nextSetupAttempt = 0
        state.unpublished.removeAll { $0.seq > journal.durableSequence }
        state.decisions.forget(after: journal.durableSequence)
    }

    // MARK: Applying the log

    /// Applies the log's message `seq` (and any before it this daemon has not applied): one decision record.
    private func apply(_ seq: UInt64, _ time: Int64, _ bytes: [UInt8], _ state: ReplicatedState, _ journal: Journal) {
        guard state.broken == nil, state.caughtUpAt != nil, journal.failure == nil, state.rollBackTo == nil else { return }
        guard seq > state.applied else {
            // Delivered again (a consumer replaced): it must still be what was applied at that sequence.
            if seq + ReplicatedState.checkWindow > state.applied, seq <= journal.durableSequence,
               let record = try? journal.record(seq), Self.disagreement(record: record, logged: bytes, time: time) != nil {
                wantCheck(from: seq, state)
            }
            return
        }
        state.logKnownThrough = max(state.logKnownThrough, seq)
        guard seq == state.applied + 1 else {
            // A hole (two consumers' deliveries interleaved, or one recreated mid-way): read the missing messages,
            // this one included, directly; they arrive in order.
            if seq > state.fillAskedThrough && !state.fillPending {
                state.fillPending = true
                state.replicator.fill(max(state.applied, state.fillAskedThrough) + 1...seq, epoch: state.epoch)
                state.fillAskedThrough = seq
            }
            return
        }
        applyOne(seq, time, bytes, state, journal)
    }

    private func applyOne(_ seq: UInt64, _ time: Int64, _ bytes: [UInt8], _ state: ReplicatedState, _ journal: Journal) {
        let empty = TradeRequest(desk: "", symbol: "", side: .unknown, quantity: Quantity(e8: 0), price: Price(e8: 0), clientOrderID: "")
        let message = TradeWire.decodeSequenced(bytes)
        let request = message?.request ?? empty
        let mark = message?.markE8 ?? 0
        let decision: TradeWire.Decision
        if message == nil {
            decision = .rejected(RejectReason(.malformed, "log message \(seq) is not a trade request"))
        } else if request.trader.isEmpty {
            decision = .rejected(RejectReason(.unauthenticated, "no authenticated trader"))
        } else if let bad = request.validationError() {
            decision = .rejected(bad)
        } else {
            let key = RetryKey(trader: request.trader, clientOrderID: request.clientOrderID)
            let earlier: (seq: UInt64, trade: TradeRequest)?
            if let f = inFlight[key] { earlier = (f.seq, f.request) } else {
                do { earlier = try journaledTrade(of: key, journal) } catch {
                    // A decision that depends on an unreadable record cannot be made alike on every replica.
                    state.broken = "cannot read the journal to judge log message \(seq) (\(error)); run 'tickwire audit verify'"
                    log("trades: replicated trading STOPPED: \(state.broken!)")
                    return
                }
            }
            if let (first, original) = earlier {
                decision = Self.difference(original, request, seq: first).map { .rejected($0) } ?? .duplicate(of: first)
            } else if let check = config.sequencedCheck, let why = check(request, mark, message!.formerSeq != 0) {
                decision = .rejected(why)
            } else {
                decision = .accepted
            }
        }
        let record = TradeWire.encodeDecision(decision, request: request, markE8: mark, origin: message?.origin ?? "",
                                              formerSeq: decision == .accepted ? message?.formerSeq ?? 0 : 0)
        // Both times come from the message's bytes, not from the log's time for it: a trade put into the log again
        // (the log lost its tail and the cut trades went back in, in the same order) is the same bytes at the same
        // sequence under a new log time, and a replica that applied that copy must write the record that one which
        // kept the first copy holds, or their chains end apart.
        let received = Nanos(message?.receivedNanos ?? time)
        let journaled: UInt64
        do {
            journaled = try journal.append(record, eventTime: received, knownTime: received)
        } catch {
            // The journal stopped (a full disk): the service thread probes it and reopens; the log is applied
            // again from its durable end then.
            return
        }
        guard journaled == seq else {
            state.broken = "journal sequence \(journaled) for log message \(seq): the journal and the log differ"
            log("trades: replicated trading STOPPED: \(state.broken!)")
            return
        }
        state.applied = seq
        state.decisions.record(seq, decision, request)
        if case .accepted = decision {
            inFlight[RetryKey(trader: request.trader, clientOrderID: request.clientOrderID)] = (seq, request)
            do { _ = try retryIndex?.insert(RetryIndex.key(trader: request.trader, clientOrderID: request.clientOrderID), seq: seq) } catch {
                log("trades: retry index insert failed: \(error)")
            }
            state.unpublished.append((seq, request, Nanos(message!.receivedNanos)))
        }
    }

    // MARK: Answering

    private func published(_ id: String, _ result: Result<JetStream.PubAck, NATSError>, _ state: ReplicatedState,
                           _ router: ZMQSocket, _ journal: Journal) {
        state.putBacks.answered(id, result, now: Nanos.now().rawValue)
        guard let slots = state.byMsgId.removeValue(forKey: id) else { return }
        switch result {
        case .success(let ack):
            state.logKnownThrough = max(state.logKnownThrough, ack.sequence)
            for var slot in slots {
                slot.logDuplicate = ack.duplicate
                if ack.sequence <= state.resolvedThrough {
                    resolve(slot, at: ack.sequence, state, router, journal)
                } else {
                    state.bySeq[ack.sequence, default: []].append(slot)
                }
            }
        case .failure(let error):
            let text = error.isTimeout
                ? "no confirmation from the replicated log (\(error)): it may still be recorded; resend the same id to learn its outcome"
                : "not recorded: the replicated log refused it (\(error))"
            for slot in slots { settle(slot, .reject(clientOrderID: slot.request.clientOrderID, RejectReason(.replicationUnavailable, text)), router) }
        }
    }

    /// Answers one waiting trade from the decision recorded at `seq` (the log message that carried its id).
    /// `checked`: a check since found the journal as the log (the answer is given from it as it is).
    private func resolve(_ slot: ReplicatedState.Slot, at seq: UInt64, _ state: ReplicatedState, _ router: ZMQSocket, _ journal: Journal,
                         checked: Bool = false) {
        let r = slot.request
        let recorded: (TradeWire.Decision, TradeRequest)?
        var unreadable = ""
        if let d = state.decisions[seq] { recorded = d } else {
            do {
                recorded = TradeWire.decodeDecision(try journal.record(seq).payload).map { ($0.decision, $0.request) }
                if recorded == nil { unreadable = "not a decision record" }
            } catch {
                recorded = nil
                unreadable = "\(error)"
            }
        }
        guard let (decision, original) = recorded else {
            // Damage found on read (or an I/O error): the answer cannot be told from here; the operator is told.
            count { $0.journalReadFailures += 1 }
            log("trades: \(Self.msgId(r)) refused: the decision at seq \(seq) cannot be read back: \(unreadable)")
            return settle(slot, .reject(clientOrderID: r.clientOrderID, RejectReason(.journalUnavailable, "cannot read the decision at seq \(seq) (\(unreadable)); resend the same id")), router)
        }
        guard original.trader == r.trader, original.clientOrderID == r.clientOrderID else {
            // The log says this id is at `seq` and the journal holds another there: they differ (the log replaced
            // a message after this daemon applied it). The answer waits for the check and its rollback.
            if checked {
                return settle(slot, .reject(clientOrderID: r.clientOrderID, RejectReason(.replicationUnavailable, "the replicated log and this daemon's journal differ at seq \(seq); resend the same id")), router)
            }
            log("trades: the replicated log holds \(Self.msgId(r)) at \(seq) but the journal holds \(Self.msgId(original)) there; checking the journal against the log")
            state.held.append((slot, seq))
            wantCheck(from: seq, state)
            return
        }
        if !checked, case .duplicate(let first) = decision, !slot.logDuplicate, let at = try? journal.record(first).knownTime,
           Nanos.now().rawValue - at.rawValue < Int64(state.replicator.config.duplicateWindowSeconds) * 1_000_000_000 - 5_000_000_000 {
            // The log took this id as new although the journal holds it from `first`, well inside the log's
            // duplicate window (measured from the trade's receipt, at or before the log's time for it): the log no
            // longer holds it there. The answer waits for the check and its rollback.
            log("trades: the replicated log took \(Self.msgId(r)) as new at \(seq) but the journal holds it from \(first); checking the journal against the log")
            state.held.append((slot, seq))
            wantCheck(from: first, state)
            return
        }
        let reply: TradeReply
        switch decision {
        case .accepted:
            if let why = Self.difference(original, r, seq: seq) { reply = .reject(clientOrderID: r.clientOrderID, why) }
            else { reply = .ack(clientOrderID: r.clientOrderID, seq: seq, duplicate: slot.logDuplicate) }
        case .duplicate(let first):
            if let why = Self.difference(original, r, seq: first) { reply = .reject(clientOrderID: r.clientOrderID, why) }
            else { reply = .ack(clientOrderID: r.clientOrderID, seq: first, duplicate: true) }
        case .rejected(let why):
            if let differs = Self.difference(original, r, seq: seq) { reply = .reject(clientOrderID: r.clientOrderID, differs) }
            else { reply = .reject(clientOrderID: r.clientOrderID, why) }
        }
        settle(slot, reply, router)
    }

    private func settle(_ slot: ReplicatedState.Slot, _ answer: TradeReply, _ router: ZMQSocket) {
        let m = slot.message
        guard m.replies[slot.index] == nil else { return }   // already answered (timed out)
        m.replies[slot.index] = answer
        m.openSlots -= 1
        switch answer {
        case .ack(_, _, let duplicate): count { if duplicate { $0.duplicates += 1 } else { $0.accepted += 1 } }
        case .reject: count { $0.rejected += 1 }
        }
        if m.openSlots == 0 { reply(router, m.route, m.replies.map { $0! }) }
    }

    /// Refuses what waited longer than the acknowledgement timeout (the cluster lost its quorum, or this daemon
    /// cannot journal): the outcome is unknown, and a resend of the same id will tell it.
    private func expire(_ state: ReplicatedState, _ router: ZMQSocket, now: Int64) {
        let limit = state.replicator.config.ackTimeoutMs * 1_000_000
        var abandoned = false
        while state.openHead < state.open.count {
            let m = state.open[state.openHead]
            if m.openSlots > 0 {
                guard now - m.received > limit else { break }
                for id in m.msgIds where state.byMsgId.removeValue(forKey: id) != nil { abandoned = true }
                for i in m.replies.indices where m.replies[i] == nil {
                    m.replies[i] = .reject(clientOrderID: m.clientOrderIDs[i], RejectReason(.replicationUnavailable,
                        "no confirmation within \(state.replicator.config.ackTimeoutMs) ms: the trade may or may not be recorded; resend the same id to learn its outcome"))
                    count { $0.rejected += 1 }
                }
                m.openSlots = 0
                reply(router, m.route, m.replies.map { $0! })
            }
            state.openHead += 1
        }
        if state.openHead == state.open.count {
            state.open.removeAll(keepingCapacity: true); state.openHead = 0
        } else if state.openHead >= 1024 {
            state.open.removeFirst(state.openHead); state.openHead = 0
        }
        if abandoned {
            let n = state.replicator.abandonUnanswered()
            if n > 0 { log("trades: replicated log: gave up waiting on \(n) publish(es) the cluster never answered") }
        }
    }

    /// An ordered consumer can stall without a word (its server gone, the stream's leader moved, a consumer
    /// being recreated during an election): when the log is known to hold more than this daemon applied and
    /// nothing moved for `stallNanos`, consume again from the next sequence. With nothing known, ask the log's
    /// end now and then (the other daemon's trades). Nothing here waits for the cluster.
    private func watchProgress(_ state: ReplicatedState, _ journal: Journal, now: Int64) {
        guard state.caughtUpAt != nil, state.broken == nil, journal.failure == nil else { return }
        if now - state.lastAsk >= ReplicatedState.askNanos {
            state.lastAsk = now
            state.appliedAtAsk = state.applied
            state.replicator.askLastSequence()
            let last = min(state.applied, journal.durableSequence)
            if last > 0 && state.checking == nil { state.replicator.spot(last) }
        }
        if state.applied != state.progressCheck.applied {
            state.progressCheck = (state.applied, now)
            return
        }
        guard now - state.progressCheck.at >= ReplicatedState.stallNanos else { return }
        if state.logKnownThrough > state.applied && now - state.lastRestart >= ReplicatedState.restartNanos {
            state.lastRestart = now
            // Read what is known to be there directly (the stream's leader answers as soon as it is elected,
            // sooner than a new consumer can be made), and make a new consumer for what comes after.
            if !state.fillPending {
                state.fillPending = true
                state.fillAskedThrough = min(state.logKnownThrough, state.applied + ReplicatedState.fillBatch)
                state.replicator.fill(state.applied + 1...state.fillAskedThrough, epoch: state.epoch)
            }
            if !state.consumerPending {
                state.consumerPending = true
                state.replicator.consume(from: state.applied + 1, epoch: state.epoch)
                count { $0.consumerRestarts += 1 }
                wantCheck(from: state.applied, state)
            }
        }
    }
}
