import Foundation
import TickwireCore
import TickwireJournal
import TickwireNATS

/// The trades a rollback cut from the journal, owed to the replicated log until the journal holds each of them
/// again (docs/ARCHITECTURE.md, "When the log changes its mind"). Each stays here, and in its file under
/// `journal/putback/`, until then: a put-back the cluster did not confirm (an election, a timeout, a publish
/// given up) is sent again, and so is one the log said it already held when the journal, having applied the log
/// that far, does not hold it.
struct PutBacks {
    struct Entry {
        /// The log message (version 2: it names the sequence the trade was first accepted at).
        let bytes: [UInt8]
        let key: TradeService.RetryKey
        let formerSeq: UInt64
        /// The file under `journal/putback/` that keeps it.
        let file: String
        /// The id it goes into the log under: the trade's own (the log drops it if it still holds the trade), or,
        /// once the log claimed to hold that id where the journal holds no such trade, one of the put-back's own
        /// (`…#reinstate-SEQ`, the same on every replica, so the log keeps one copy).
        var msgId: String
        /// When it was last sent (nil: to be sent), and where the log said it already held it.
        var sentAt: Int64?
        var heldAt: UInt64?
    }

    /// By the id each was last sent under.
    private(set) var entries: [String: Entry] = [:]
    /// Entries left per file.
    private var left: [String: Int] = [:]
    /// How far the log was applied, and when, at the last look for entries the journal holds.
    private var lastSweep: (applied: UInt64, at: Int64) = (0, 0)

    /// A put-back not back in the journal this long after it was sent is sent again (the acknowledgement
    /// timeout); one the log refused, after `retryNanos`.
    let resendNanos: Int64
    static let retryNanos: Int64 = 1_000_000_000

    #if DEBUG
    /// Debug builds only, for tests: this many put-backs are dropped as if the cluster never answered them
    /// (`TICKWIRE_DEBUG_DROP_PUTBACKS`).
    var toDrop = Int(ProcessInfo.processInfo.environment["TICKWIRE_DEBUG_DROP_PUTBACKS"] ?? "") ?? 0
    #endif

    init(resendNanos: Int64) { self.resendNanos = resendNanos }

    var isEmpty: Bool { entries.isEmpty }
    var count: Int { entries.count }

    /// Adds a file's messages (at a rollback, or read again at a start); one that does not decode is left out.
    mutating func add(file: String, messages: [[UInt8]]) {
        var added = 0
        for bytes in messages {
            guard let m = TradeWire.decodeSequenced(bytes) else { continue }
            let msgId = TradeService.msgId(m.request)
            guard entries[msgId] == nil else { continue }
            entries[msgId] = Entry(bytes: bytes, key: .init(trader: m.request.trader, clientOrderID: m.request.clientOrderID),
                                   formerSeq: m.formerSeq, file: file, msgId: msgId)
            added += 1
        }
        left[file, default: 0] += added
    }

    /// The log answered a put-back sent under `msgId`: a refusal sends it again soon; "already held at S" is
    /// remembered, to be checked once the log is applied through S. False: not a put-back.
    @discardableResult
    mutating func answered(_ msgId: String, _ result: Result<JetStream.PubAck, NATSError>, now: Int64) -> Bool {
        // Called for every publish's answer: nothing pending (the usual case) costs no hashing of the id.
        guard !entries.isEmpty, var e = entries[msgId] else { return false }
        switch result {
        case .success(let ack): e.heldAt = ack.duplicate ? ack.sequence : nil
        case .failure: e.sentAt = now - resendNanos + Self.retryNanos
        }
        entries[msgId] = e
        return true
    }

    /// Takes out what the journal holds again (`held`), and returns the files now settled. Looks when the log
    /// was applied further, or once a second.
    mutating func sweep(applied: UInt64, now: Int64, held: (TradeService.RetryKey) -> Bool) -> [String] {
        guard applied != lastSweep.applied || now - lastSweep.at >= 1_000_000_000 else { return [] }
        lastSweep = (applied, now)
        var settled: [String] = []
        for (msgId, e) in entries {
            if held(e.key) {
                entries[msgId] = nil
                left[e.file, default: 1] -= 1
                if left[e.file] == 0 { left[e.file] = nil; settled.append(e.file) }
            } else if let at = e.heldAt, applied >= at {
                // The log said it held this id at `at`, and the journal, applied that far, holds no such trade
                // (the log's duplicate filter remembers an id its messages no longer hold): under an id of its own.
                entries[msgId] = nil
                var moved = e
                moved.msgId = e.key.trader + "/" + e.key.clientOrderID + "#reinstate-\(e.formerSeq)"
                moved.sentAt = nil
                moved.heldAt = nil
                entries[moved.msgId] = moved
            }
        }
        return settled.sorted()
    }

    /// The entries to send now (never sent, refused, or unconfirmed for `resendNanos`), in their first order.
    func due(now: Int64) -> [Entry] {
        entries.values.filter { e in e.heldAt == nil && e.sentAt.map { now - $0 >= resendNanos } ?? true }
            .sorted { $0.formerSeq < $1.formerSeq }
    }

    mutating func sent(_ msgId: String, at now: Int64) { entries[msgId]?.sentAt = now }
}

extension TradeService {
    /// Writes the trades accepted in the records after `keep` to `journal/putback/` (before the journal is cut):
    /// the file's name, nil when there are none.
    func savePutBacks(after keep: UInt64, through end: UInt64, _ journal: Journal) throws -> (file: String, messages: [[UInt8]])? {
        var from = keep + 1, cut: [[UInt8]] = []
        while from <= end {
            let batch = try journal.records(from: from, limit: 1_024)
            guard let last = batch.last else { break }
            for r in batch {
                guard let d = TradeWire.decodeDecision(r.payload), case .accepted = d.decision else { continue }
                // Reinstated: accepted again wherever the log now places it, its first sequence named.
                let former = d.formerSeq != 0 ? d.formerSeq : r.seq
                cut.append(TradeWire.encodeSequenced(d.request, receivedNanos: r.eventTime.rawValue, markE8: d.markE8, origin: d.origin,
                                                     formerSeq: former))
            }
            from = last.seq + 1
        }
        guard !cut.isEmpty else { return nil }
        return (try PutBackFile.write(journalDirectory: dataDirectory + "/journal", messages: cut), cut)
    }

    /// At a start: the put-backs an earlier run had not seen back in the journal.
    func loadPutBacks(_ state: ReplicatedState) {
        do {
            let (files, damaged) = try PutBackFile.pending(journalDirectory: dataDirectory + "/journal")
            if !damaged.isEmpty { count { $0.putBackFilesDamaged += damaged.count } }
            for name in damaged {
                log("trades: journal/putback/\(name) is damaged and cannot be read: the trades it held are in journal/quarantine/; check them against the journal with 'tickwire audit'")
            }
            for f in files { state.putBacks.add(file: f.name, messages: f.messages) }
            if !state.putBacks.isEmpty {
                log("trades: \(state.putBacks.count) trade(s) cut by an earlier rollback go back into the log (\(files.map(\.name).joined(separator: ", ")))")
            }
        } catch {
            log("trades: cannot read journal/putback/ (\(error)); trades an earlier rollback cut may not be back in the log")
        }
    }

    /// Settles what the journal holds again, and sends what is due (as many as the cluster has room for); at
    /// most ten times a second.
    func putBackStep(_ state: ReplicatedState, _ journal: Journal, now: Int64) {
        guard now >= state.nextPutBack else { return }
        state.nextPutBack = now + 100_000_000
        let settled = state.putBacks.sweep(applied: state.applied, now: now) { key in
            inFlight[key] != nil || ((try? journaledTrade(of: key, journal)) ?? nil) != nil
        }
        for file in settled {
            do {
                try PutBackFile.settle(journalDirectory: dataDirectory + "/journal", name: file)
                log("trades: every trade in journal/putback/\(file) is back in the log and the journal")
            } catch {
                log("trades: cannot mark journal/putback/\(file) settled (\(error)); a restart sends its trades again (the log drops them as duplicates)")
            }
        }
        for e in state.putBacks.due(now: now) {
            #if DEBUG
            if state.putBacks.toDrop > 0 {
                state.putBacks.toDrop -= 1
                state.putBacks.sent(e.msgId, at: now)
                continue
            }
            #endif
            do { try state.replicator.publish(e.bytes, msgId: e.msgId) } catch { break }
            state.putBacks.sent(e.msgId, at: now)
        }
    }
}
