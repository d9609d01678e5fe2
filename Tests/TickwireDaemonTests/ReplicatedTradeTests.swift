import Foundation
import Testing
import TickwireClient
import TickwireCore
import TickwireJournal
import TickwireNATS
import TickwireTestSupport
import TickwireZMQ
@testable import TickwireDaemon

/// Active/active trading: two real daemons behind one JetStream log on a real three-server cluster. Whatever dies
/// (a daemon, the stream's leader, the whole cluster for a while), every acknowledged trade ends up in both
/// journals exactly once, at the same sequence, with the same decision, and both hash chains end alike.
@Suite(.serialized) struct ReplicatedTradeTests {
    /// Two daemons sharing the server key and the admitted traders, each with its own data directory and journal.
    final class Pair: @unchecked Sendable {
        let cluster: NATSCluster
        let dirs: [String]
        let tradePorts: [Int]
        let pubPorts: [Int]
        let metricsPorts: [Int]
        private(set) var daemons: [ChildProcess?]
        /// Each node's log lines from the processes it ran before the current one (kept across kills).
        private(set) var pastLogs: [String]
        /// The first two daemons' endpoints (a third, when there is one, joins later).
        var endpoints: String { tradePorts.prefix(2).map { "tcp://127.0.0.1:\($0)" }.joined(separator: ",") }

        /// - Parameter risk: keys of `[risk.default]` beside the price collar, which is off (the simulator's prices
        ///   are not the tests').
        /// - Parameter dataDirectories: a node's data directory where one is given (a small file system).
        init(cluster: NATSCluster, risk: String = "", ackTimeoutMs: Int = 10_000, duplicateWindow: Int = 120,
             nodes: Int = 2, trades: String = "", startBoth: Bool = true, dataDirectories: [Int: String] = [:],
             publishNATS: Bool = false) throws {
            self.cluster = cluster
            let names = ["a", "b", "c"].prefix(nodes)
            dirs = names.enumerated().map { dataDirectories[$0.offset] ?? temporaryDirectory("pair-\($0.element)") }
            tradePorts = names.map { _ in freePort() }
            pubPorts = names.map { _ in freePort() }
            metricsPorts = names.map { _ in freePort() }
            daemons = names.map { _ in nil }
            pastLogs = names.map { _ in "" }
            for (i, node) in names.enumerated() {
                try """
                data = "\(dirs[i])"
                log_level = "notice"
                [publish]
                endpoint = "tcp://127.0.0.1:\(pubPorts[i])"
                \(publishNATS ? "[publish.nats]\nservers = \"\(cluster.urls)\"" : "")
                [metrics]
                endpoint = "127.0.0.1:\(metricsPorts[i])"
                [trades]
                endpoint = "tcp://127.0.0.1:\(tradePorts[i])"
                journal_segment_bytes = 65536
                replication = "jetstream"
                nats = "\(cluster.urls)"
                node = "\(node)"
                ack_timeout_ms = \(ackTimeoutMs)
                duplicate_window_s = \(duplicateWindow)
                \(trades)
                [risk.default]
                price_collar_bps = "none"
                \(risk)
                """.write(toFile: dirs[i] + "/tickwire.toml", atomically: true, encoding: .utf8)
            }
            try start(0)
            // The pair shares one identity: the others get a's server key and traders.
            for dir in dirs.dropFirst() { try FileManager.default.copyItem(atPath: dirs[0] + "/keys", toPath: dir + "/keys") }
            if startBoth { try start(1) }
        }

        func start(_ i: Int, environment: [String: String] = [:]) throws {
            if let old = daemons[i] { pastLogs[i] += old.stderr }
            let d = try ChildProcess(tickwireBinary, ["run", "--config", dirs[i] + "/tickwire.toml", "--rate", "100"], environment: environment)
            daemons[i] = d
            let deadline = Date().addingTimeInterval(60)
            while !TradeCrashTests.listening(tradePorts[i]) && d.isRunning && Date() < deadline { usleep(10_000) }
            guard TradeCrashTests.listening(tradePorts[i]) else { throw DaemonStartError(stderr: d.stderr) }
        }

        func kill9(_ i: Int) {
            daemons[i]?.kill9()
            if let old = daemons[i] { pastLogs[i] += old.stderr }
            daemons[i] = nil
        }

        /// Takes a process started outside `start` as node `i`'s (its log is kept with the others).
        func adopt(_ i: Int, _ c: ChildProcess) { pastLogs[i] += c.stderr }

        /// Every line node `i` logged, across its restarts.
        func logs(_ i: Int) -> String { pastLogs[i] + (daemons[i]?.stderr ?? "") }

        /// Waits until every running daemon's journal holds the whole log (a passive daemon notices a stalled
        /// consumer within about a second), then stops them gracefully.
        func stop() {
            let conn = try? NATSConnection(.init(servers: cluster.servers.map(\.url)))
            if let last = (try? conn?.jetStream().streamInfo("TICKWIRE_TRADES").lastSequence) ?? nil {
                let deadline = Date().addingTimeInterval(30)
                for i in daemons.indices where daemons[i] != nil {
                    _ = journalHolds(i, Int(last), within: max(0, deadline.timeIntervalSinceNow))
                }
            }
            for d in daemons.compactMap({ $0 }) { d.signal(SIGTERM); _ = d.wait(seconds: 30) }
            for (i, d) in daemons.enumerated() { if let d { pastLogs[i] += d.stderr } }
            daemons = daemons.map { _ in nil }
        }

        func stderr(_ i: Int) -> String { daemons[i]?.stderr ?? "" }

        /// Whether, within `seconds`, every running daemon's journal ends where the log ends with the same head,
        /// and stays so for `stable` seconds (a daemon may still be rolling back and applying the log again after
        /// the log last changed its mind).
        func converged(within seconds: Double = 120, stable: Double = 5) -> Bool {
            guard let conn = try? NATSConnection(.init(servers: cluster.servers.map(\.url))) else { return false }
            defer { conn.close() }
            let deadline = Date().addingTimeInterval(seconds)
            var seen = "", since = Date()
            while Date() < deadline {
                let last = (try? conn.jetStream().streamInfo("TICKWIRE_TRADES").lastSequence) ?? 0
                let ends = daemons.indices.filter { daemons[$0] != nil }.map { i in
                    (try? JournalAudit.verify(directory: dirs[i] + "/journal")).map { "\($0.records) \($0.headHash.hex)" } ?? "?"
                }
                let now = "\(last): \(ends)"
                if Set(ends).count == 1, ends[0].hasPrefix("\(last) "), daemons.indices.allSatisfy({ daemons[$0] == nil || checked($0) }) {
                    if now != seen { seen = now; since = Date() }
                    if Date().timeIntervalSince(since) >= stable { return true }
                } else {
                    seen = ""
                }
                usleep(500_000)
            }
            return false
        }

        /// Whether node `i`'s last check of its journal against the log (after a rollback, a spot check or a record
        /// unlike the log's) has ended, and in agreement: journals equal at the log's end are not settled while a check
        /// that may roll one back is still reading (seen: equal for 5 s, then a check found record 3131 unlike the
        /// leader's and rolled back at the stop).
        func checked(_ i: Int) -> Bool {
            let marks = ["caught up after the rollback", "checking the journal against the log", "reading the journal's last records back", "rolling the journal back",
                         "the journal agrees with the log"]
            guard let last = logs(i).split(separator: "\n").last(where: { line in marks.contains { line.contains($0) } }) else { return true }
            return last.contains("the journal agrees with the log")
        }

        /// Whether node `i` logs `text` within `seconds`.
        func logs(_ i: Int, contain text: String, within seconds: Double = 60) -> Bool {
            let deadline = Date().addingTimeInterval(seconds)
            while !logs(i).contains(text) && Date() < deadline { usleep(100_000) }
            return logs(i).contains(text)
        }

        /// Keeps what a failed check needs to be explained, after the test's folders are gone: each node's whole
        /// log and journal, and the servers' stores, under one folder of /tmp named in the failure.
        func keepEvidence() -> String {
            let kept = "/tmp/tickwire-failed-pair-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
            try? FileManager.default.createDirectory(atPath: kept, withIntermediateDirectories: true)
            for (i, dir) in dirs.enumerated() {
                try? logs(i).write(toFile: kept + "/node\(i).log", atomically: true, encoding: .utf8)
                try? FileManager.default.copyItem(atPath: dir + "/journal", toPath: kept + "/journal\(i)")
            }
            try? FileManager.default.copyItem(atPath: cluster.directory, toPath: kept + "/cluster")
            return kept
        }

        /// Whether node `i`'s journal holds at least `records` records within `seconds` (a daemon that started
        /// while the cluster was still electing applies the log a few seconds after the other).
        func journalHolds(_ i: Int, _ records: Int, within seconds: Double = 60) -> Bool {
            let deadline = Date().addingTimeInterval(seconds)
            repeat {
                if ((try? JournalAudit.verify(directory: dirs[i] + "/journal").records) ?? 0) >= records { return true }
                usleep(100_000)
            } while Date() < deadline
            return false
        }

        deinit {
            for d in daemons.compactMap({ $0 }) { d.kill9() }
            for d in dirs { try? FileManager.default.removeItem(atPath: d) }
        }
    }

    /// Acknowledgements seen by the clients: the sequences each id was acknowledged at (one, unless the log lost
    /// the trade after confirming it and a resend learned where it was reinstated).
    final class Ledger: @unchecked Sendable {
        private let lock = NSLock()
        private(set) var acked: [String: Set<UInt64>] = [:]
        func ack(_ id: String, _ seq: UInt64) {
            lock.lock(); defer { lock.unlock() }
            acked[id, default: []].insert(seq)
        }
        var count: Int { lock.lock(); defer { lock.unlock() }; return acked.count }
        private(set) var resends = 0, transientRefusals = 0, sentCount = 0
        func counted(resends r: Int, refusedAndResent t: Int) { lock.lock(); resends += r; transientRefusals += t; lock.unlock() }
        func sent(_ n: Int) { lock.lock(); sentCount += n; lock.unlock() }
        var summary: String { lock.lock(); defer { lock.unlock() }; return "\(acked.count) acknowledged of \(sentCount) sent, \(resends) resent after no reply, \(transientRefusals) refused for an unavailable log and sent again" }
        func isAcked(_ id: String) -> Bool { lock.lock(); defer { lock.unlock() }; return acked[id] != nil }
    }

    static func trade(_ id: String, desk: String = "D1", qty: Int64 = 1, side: Side = .buy) -> TradeRequest {
        TradeRequest(desk: desk, symbol: "AAPL", side: side, quantity: Quantity(e8: qty * 100_000_000),
                     price: Price(e8: 18_725_000_000), clientOrderID: id)
    }

    /// Sends the requests through the pair (round-robin over the daemons that are up) until all are sent or
    /// `stopSending` says so, resending the same id after no reply or a refusal for an unavailable log, until each
    /// sent one has a final answer or `seconds` pass. Returns the final answers by id (and counts resends).
    @discardableResult
    static func submit(_ requests: [TradeRequest], through pair: Pair, ledger: Ledger, seconds: Double = 90,
                       stopSending: (() -> Bool)? = nil) -> [String: TradeReply] {
        let ctx = ZMQContext()
        guard let client = try? TradeClient.forDataDirectory(pair.dirs[0], context: ctx, endpoint: pair.endpoints) else { return [:] }
        defer { client.close() }
        // The retrying submitter of `tickwire trade submit --connect A,B`; a journal refusal is "not now" here too.
        let submitter = RetryingSubmitter(client: client, policy: .init(
            resendAfterMs: 2_000, resendRefusedAfterMs: 500, giveUpAfterMs: Int(seconds * 1000),
            transient: [.replicationUnavailable, .journalUnavailable]))
        defer { ledger.counted(resends: submitter.resends, refusedAndResent: submitter.refusedAndResent) }
        var answers: [String: TradeReply] = [:]
        var next = 0
        let deadline = Date().addingTimeInterval(seconds)
        while (next < requests.count && !(stopSending?() ?? false)) || submitter.outstanding > 0 {
            guard Date() < deadline else { break }
            while next < requests.count && submitter.outstanding < 64 && !(stopSending?() ?? false) {
                try? submitter.send([requests[next]]); next += 1
            }
            _ = try? submitter.poll(timeoutMs: 200) { outcome in
                guard case .replied(let reply) = outcome else { return }
                if case .ack(let id, let seq, _) = reply { ledger.ack(id, seq) }
                answers[reply.clientOrderID] = reply
            }
        }
        ledger.sent(next)
        return answers
    }

    /// Submits `batch` through the pair on a thread of its own (as `submit` does) while a test breaks things.
    final class Submitting: @unchecked Sendable {
        let batch: [TradeRequest]
        private let done = Locked2(false), stopSending = Locked2(false)
        private let sent = Locked2([String: TradeReply]())

        init(_ batch: [TradeRequest], through pair: Pair, ledger: Ledger, seconds: Double) {
            self.batch = batch
            Thread { [self] in
                sent.set(ReplicatedTradeTests.submit(batch, through: pair, ledger: ledger, seconds: seconds, stopSending: { self.stopSending.get() }))
                done.set(true)
            }.start()
        }

        /// Stops sending and waits (two minutes at most) for the answers: the requests that were sent.
        func finish(_ what: String) -> [TradeRequest] {
            stopSending.set(true)
            let deadline = Date().addingTimeInterval(120)
            while !done.get() && Date() < deadline { usleep(20_000) }
            #expect(done.get(), "\(what): the clients did not finish")
            let answered = sent.get()
            return batch.filter { answered[$0.clientOrderID] != nil }
        }
    }

    /// After a run that broke things: every request sent was answered, a last trade goes through, both journals
    /// settle on the log (a daemon whose consumer read a replica's stale tail notices within a second and rolls
    /// back), and `checkJournals` holds. Prints how often each daemon rolled back.
    static func settleAndCheck(_ pair: Pair, _ ledger: Ledger, sent: [TradeRequest], _ what: String) throws {
        let missing = sent.filter { !ledger.isAcked($0.clientOrderID) }.map(\.clientOrderID)
        #expect(missing.isEmpty, "never acknowledged: \(missing.prefix(5))")
        _ = submit([trade("final")], through: pair, ledger: ledger)
        #expect(pair.converged(), "the journals did not settle on the log within two minutes")
        pair.stop()
        let rollbacks = (0..<2).map { pair.logs($0).components(separatedBy: "journal rolled back").count - 1 }
        print("rollbacks after \(what): \(rollbacks)")
        try checkJournals(pair, ledger)
    }

    /// Both journals after the run: they verify, hold the same records with the same head, and every acknowledged
    /// trade is in them exactly once, accepted, at its acknowledged sequence; or, when the log lost it after
    /// confirming it, reinstated from that sequence (accepted again at a later one, the first named in its record;
    /// a resend after that is acknowledged at the later one).
    static func checkJournals(_ pair: Pair, _ ledger: Ledger, nodes: Int = 2) throws {
        var heads: [String] = [], counts: [Int] = []
        struct Written: Equatable { var payload: [UInt8], eventTime: Nanos, knownTime: Nanos }
        var records: [[UInt64: Written]] = []
        for (node, dir) in pair.dirs.prefix(nodes).enumerated() {
            let v = try JournalAudit.verify(directory: dir + "/journal")
            #expect(v.ok, "\(dir): \(String(describing: v.corruption))")
            heads.append(v.headHash.hex); counts.append(v.records)
            var payloads: [UInt64: Written] = [:]
            // Each accepted id's sequences, and the sequence it was first accepted at when it was reinstated.
            var accepted: [String: [UInt64]] = [:], firstAt: [String: UInt64] = [:]
            try JournalAudit.forEach(directory: dir + "/journal") { r in
                payloads[r.seq] = Written(payload: r.payload, eventTime: r.eventTime, knownTime: r.knownTime)
                if let d = TradeWire.decodeDecision(r.payload), case .accepted = d.decision {
                    accepted[d.request.clientOrderID, default: []].append(r.seq)
                    if d.formerSeq != 0 { firstAt[d.request.clientOrderID] = d.formerSeq }
                }
            }
            records.append(payloads)
            let twice = accepted.filter { $0.value.count > 1 }
            #expect(twice.isEmpty, "\(dir): accepted twice: \(twice.prefix(5))")
            // Acknowledged at S: accepted at S, or (the log lost it after confirming it) reinstated from S. Or, once the
            // log changed its mind (a rollback), accepted once at another sequence: a resend of the id reached the new
            // log before the put-back, so the record is the resend's and names no earlier sequence (PROTOCOL.md).
            // The acknowledgement may be the other daemon's: a rollback there moves it here too (this daemon
            // followed the new log and had nothing to roll back), so a rollback on either daemon explains a move.
            let eitherRolledBack = (0..<nodes).contains { pair.logs($0).contains("journal rolled back") }
            let absent = ledger.acked.filter { id, _ in accepted[id]?.count != 1 }
            let moved = ledger.acked.filter { id, seqs in
                guard let at = accepted[id], at.count == 1 else { return false }
                return !seqs.isSubset(of: [at[0], firstAt[id] ?? at[0]])
            }
            let reinstated = ledger.acked.filter { id, seqs in firstAt[id].map(seqs.contains) ?? false }.count
            if reinstated > 0 { print("\(dir): \(reinstated) acknowledged trade(s) reinstated at a later sequence after the log lost them") }
            if eitherRolledBack && !moved.isEmpty { print("\(dir): \(moved.count) acknowledged trade(s) journaled once at another sequence (a resend reached the log before the put-back)") }
            // What the daemon said of the log changing its mind, to tell next time why a sequence moved.
            let rollbacks = pair.logs(node).split(separator: "\n").filter { $0.contains("rolling the journal back") || $0.contains("rolled back") || $0.contains("checking the journal against the log") }
            let wrong = absent.merging(eitherRolledBack ? [:] : moved) { a, _ in a }
            if !wrong.isEmpty {
                let seqs = wrong.values.flatMap { $0 }
                Issue.record("""
                    \(dir): \(wrong.count) acknowledged but absent (\(absent.count), such as \(absent.keys.prefix(3))) or at another \
                    sequence with no rollback on either daemon (acknowledged at \(seqs.min()!)…\(seqs.max()!)), \
                    such as \(wrong.prefix(3).map { "\($0.key) acked at \($0.value.sorted()), journaled at \(accepted[$0.key] ?? [])" }); \
                    its rollbacks: \(rollbacks.prefix(6)); logs, journals and the servers' stores kept in \(pair.keepEvidence())
                    """)
            }
        }
        #expect(Set(counts).count == 1, "records: \(counts)")
        #expect(Set(heads).count == 1, "head hashes differ: \(heads); logs, journals and stores kept in \(pair.keepEvidence())")
        for other in records.dropFirst() {
            let different = Set(records[0].keys).intersection(other.keys).filter { records[0][$0] != other[$0] }.sorted()
            func shown(_ w: Written?) -> String {
                w.map { "\(TradeWire.auditFields($0.payload) ?? "") event \($0.eventTime.rawValue) known \($0.knownTime.rawValue)" } ?? ""
            }
            #expect(different.isEmpty, "\(different.count) records differ, the first at \(different.first ?? 0): \(shown(different.first.flatMap { records[0][$0] })) against \(shown(different.first.flatMap { other[$0] }))")
        }
    }

    /// Flips one bit in the payload of journal record `seq` (a damaged sector), the daemon stopped.
    @discardableResult
    static func flipPayloadByte(journal: String, seq: UInt64) throws -> JournalRecord {
        let victim = try #require(try JournalAudit.show(directory: journal, seq: seq))
        let handle = try #require(FileHandle(forUpdatingAtPath: journal + "/" + victim.segment))
        defer { try? handle.close() }
        let at = UInt64(victim.offset) + UInt64(JournalFormat.recordHeaderSize) + 3
        try handle.seek(toOffset: at)
        let byte = try #require(try handle.read(upToCount: 1)).first!
        try handle.seek(toOffset: at)
        try handle.write(contentsOf: [byte ^ 0x40])
        return victim
    }

    static var available: Bool { NATSCluster.executable != nil && FileManager.default.isExecutableFile(atPath: tickwireBinary) }

    // MARK: Tests

    /// Trades through both daemons, some refused by a position limit: both journals end identical, decisions
    /// included, and `tickwire audit verify` prints the same count and head on both.
    @Test func bothDaemonsRecordTheSameTradesAndDecisions() throws {
        guard Self.available else { Issue.record("nats-server or the tickwire binary is missing"); return }
        let cluster = try NATSCluster(size: 3)
        let pair = try Pair(cluster: cluster, risk: "max_position = 50")
        let ledger = Ledger()
        let answers = Self.submit((0..<120).map { Self.trade("t\($0)") }, through: pair, ledger: ledger)
        #expect(answers.count == 120)
        let refused = answers.values.filter { if case .reject(_, let why) = $0 { why.code == .preTradeCheck } else { false } }
        #expect(refused.count == 70, "max_position 50 of 120 one-lot buys: 70 refused in log order, got \(refused.count)")
        pair.stop()
        try Self.checkJournals(pair, ledger)
        let outputs = try pair.dirs.map { try DaemonProcess.tickwire(["audit", "verify", "--data", $0]) }
        // The same count, last sequence and head hash (segment files roll at moments of each daemon's own).
        func essentials(_ out: String) -> [String] {
            out.split(separator: ",").filter { $0.contains("\"records\"") || $0.contains("\"last_seq\"") || $0.contains("\"head_hash\"") }.map(String.init)
        }
        #expect(outputs[0].status == 0 && essentials(outputs[0].stdout) == essentials(outputs[1].stdout) && essentials(outputs[0].stdout).count == 3, "\(outputs)")
        let shown = try DaemonProcess.tickwire(["audit", "show", "--data", pair.dirs[1], "100"])
        #expect(shown.stdout.contains("\"decision\":\"rejected\"") && shown.stdout.contains("max_position"), "\(shown)")
    }

    /// One id sent to both daemons at once is one trade; the same id with other contents is refused, never
    /// answered with the first acknowledgement.
    @Test func oneIdIsOneTradeThroughEitherDaemon() throws {
        guard Self.available else { Issue.record("nats-server or the tickwire binary is missing"); return }
        let cluster = try NATSCluster(size: 3)
        let pair = try Pair(cluster: cluster)
        let ledger = Ledger()
        let ctx = ZMQContext()
        let clients = try pair.tradePorts.map {
            try TradeClient.forDataDirectory(pair.dirs[0], context: ctx, endpoint: "tcp://127.0.0.1:\($0)")
        }
        defer { clients.forEach { $0.close() } }
        // Both caught up and serving: each daemon acknowledges a trade of its own.
        for (i, c) in clients.enumerated() {
            let deadline = Date().addingTimeInterval(60)
            var reply: TradeReply?
            repeat {
                reply = try c.submit(Self.trade("warm-up-\(i)"), timeoutMs: 15_000)
                if case .ack(_, let seq, _)? = reply { ledger.ack("warm-up-\(i)", seq) } else { usleep(200_000) }
            } while !(reply.map { if case .ack = $0 { true } else { false } } ?? false) && Date() < deadline
        }
        for round in 0..<20 {
            let id = "same-\(round)"
            for c in clients { try c.send(Self.trade(id)) }
            let replies = try clients.map { try $0.receive(timeoutMs: 15_000) }
            var seqs: Set<UInt64> = []
            for reply in replies {
                guard case .ack(_, let seq, _)? = reply else { Issue.record("round \(round): \(String(describing: reply))"); continue }
                seqs.insert(seq)
                ledger.ack(id, seq)
            }
            #expect(seqs.count == 1, "round \(round): one id, sequences \(seqs)")
        }
        let other = try clients[1].submit(Self.trade("same-3", qty: 7), timeoutMs: 15_000)
        guard case .reject(_, let why) = other else { Issue.record("other contents acknowledged: \(other)"); return }
        #expect(why.code == .idInUse, "\(why)")
        pair.stop()
        try Self.checkJournals(pair, ledger)
    }

    /// kill -9 of either daemon at random moments while clients submit through both, many times: nothing
    /// acknowledged is lost, doubled or judged differently, and the restarted daemon catches up from the log.
    @Test func killingEitherDaemonLosesNothingAcknowledged() throws {
        guard Self.available else { Issue.record("nats-server or the tickwire binary is missing"); return }
        let cluster = try NATSCluster(size: 3)
        let pair = try Pair(cluster: cluster)
        let ledger = Ledger()
        let cycles = 10
        var all: [TradeRequest] = []
        let seed = UInt64.random(in: 0...UInt64.max)
        var rng = SplitMix(seed: seed)
        print("killingEitherDaemonLosesNothingAcknowledged: seed \(seed)")
        for cycle in 0..<cycles {
            // Far more than a cycle can send: the kill lands mid-stream, and sending stops a while after the restart.
            let batch = (0..<200_000).map { Self.trade("k\(cycle)-\($0)", desk: "D\($0 % 4)", side: $0 % 3 == 0 ? .sell : .buy) }
            let submitting = Submitting(batch, through: pair, ledger: ledger, seconds: 90)
            usleep(UInt32.random(in: 50_000...600_000, using: &rng))
            let victim = Int.random(in: 0...1, using: &rng)
            pair.kill9(victim)
            usleep(UInt32.random(in: 0...300_000, using: &rng))
            try pair.start(victim)
            usleep(300_000)
            all += submitting.finish("cycle \(cycle)")
        }
        print("kill -9 of either daemon, \(cycles) cycles: \(ledger.summary)")
        #expect(ledger.resends + ledger.transientRefusals > 0, "no kill landed while trades were in flight")
        // Everything sent is acknowledged in the end (every refusal here was transient).
        let missing = all.filter { !ledger.isAcked($0.clientOrderID) }.map(\.clientOrderID)
        #expect(missing.isEmpty, "never acknowledged: \(missing.prefix(5)) (seed \(seed))")
        // Let both apply the whole log, then stop them.
        let final = Self.submit([Self.trade("final")], through: pair, ledger: ledger)
        #expect(final.count == 1)
        sleep(1)
        pair.stop()
        try Self.checkJournals(pair, ledger)
    }

    /// kill -9 of the stream's leader while clients submit, several times: the cluster elects another (4–7 s
    /// here) and no acknowledged trade is lost or doubled.
    @Test func killingTheStreamLeaderLosesNothingAcknowledged() throws {
        guard Self.available else { Issue.record("nats-server or the tickwire binary is missing"); return }
        let cluster = try NATSCluster(size: 3)
        let pair = try Pair(cluster: cluster)
        let ledger = Ledger()
        _ = Self.submit([Self.trade("warm-up")], through: pair, ledger: ledger)
        let probe = try NATSConnection(.init(servers: cluster.servers.map(\.url)))
        let js = try probe.jetStream()
        var all: [TradeRequest] = []
        for cycle in 0..<5 {
            let batch = (0..<500_000).map { Self.trade("L\(cycle)-\($0)") }
            let submitting = Submitting(batch, through: pair, ledger: ledger, seconds: 120)
            usleep(200_000)
            // Right after a restart the probe may be reconnecting and the stream electing: ask until it answers.
            var leader: String?
            let asked = Date()
            while leader == nil && Date().timeIntervalSince(asked) < 30 {
                leader = (try? js.streamInfo("TICKWIRE_TRADES"))?.leader
                if leader == nil { usleep(200_000) }
            }
            guard let leader, let index = cluster.servers.firstIndex(where: { $0.name == leader }) else {
                Issue.record("cycle \(cycle): no stream leader"); continue
            }
            cluster.kill(index)
            // Keep sending through the election (4–7 s here) and a little after.
            sleep(9)
            all += submitting.finish("cycle \(cycle)")
            try cluster.start(index)
            try cluster.waitReady(index, routes: 2)
        }
        print("kill -9 of the stream leader, 5 cycles: \(ledger.summary)")
        #expect(ledger.resends + ledger.transientRefusals > 0, "no leader kill landed while trades were in flight")
        // nats-server 2.9.10 has been seen to replace, in an election, a message it had already delivered: the
        // daemons check what they applied against the log after each failover and roll such a tail back.
        try Self.settleAndCheck(pair, ledger, sent: all, "leader kills")
    }

    /// More than the log's replication survives: the stream's leader and one other server lose power at once
    /// while trading. nats-server 2.9.10 acknowledges a message once a quorum holds it in memory and syncs its files
    /// every two minutes, so each comes back with its store as it was on disk a moment before (here: a copy taken
    /// two seconds earlier, while it ran). The two form a quorum without the last messages the log confirmed, and
    /// the third server's longer log is cut to theirs. The daemons find their journals ahead of the log, roll back
    /// and put the cut trades back: every acknowledged trade must end in both journals once, at its sequence or
    /// reinstated from it.
    ///
    /// Beyond the cluster's fault model (restored disks break Raft's persistent term and vote), nats-server 2.9.10
    /// can flip the log between the two histories for seconds and serve a consumer a replica's stale tail: the
    /// daemons roll back as often as it changes its mind, notice a stale consumer by their spot reads, and the test
    /// waits for both journals to settle on the log before it compares. It found the stale deliveries applied after
    /// a rollback and the acknowledgements a resend moves (docs/NEXT.md).
    @Test
    func twoServersLosingPowerLosesNothingAcknowledged() throws {
        guard Self.available else { Issue.record("nats-server or the tickwire binary is missing"); return }
        let cluster = try NATSCluster(size: 3)
        let pair = try Pair(cluster: cluster)
        let ledger = Ledger()
        _ = Self.submit([Self.trade("warm-up")], through: pair, ledger: ledger)
        let probe = try NATSConnection(.init(servers: cluster.servers.map(\.url)))
        let js = try probe.jetStream()
        let batch = (0..<500_000).map { Self.trade("P-\($0)") }
        let submitting = Submitting(batch, through: pair, ledger: ledger, seconds: 120)
        usleep(500_000)
        let leader = try retrying { () throws -> String in
            guard let l = try js.streamInfo("TICKWIRE_TRADES").leader else { throw NATSError(status: 0, operation: "leader", text: "none yet") }
            return l
        }
        let index = try #require(cluster.servers.firstIndex { $0.name == leader })
        let other = (index + 1) % 3
        let fm = FileManager.default
        let onDisk = [index, other].map { cluster.servers[$0].storeDir + ".on-disk" }
        for (i, copy) in zip([index, other], onDisk) { try fm.copyItem(atPath: cluster.servers[i].storeDir, toPath: copy) }
        let before = try js.streamInfo("TICKWIRE_TRADES").lastSequence
        sleep(2)
        cluster.kill(index)
        cluster.kill(other)
        let confirmed = ledger.acked.values.flatMap { $0 }.max() ?? 0
        for (i, copy) in zip([index, other], onDisk) {
            try fm.removeItem(atPath: cluster.servers[i].storeDir)
            try fm.moveItem(atPath: copy, toPath: cluster.servers[i].storeDir)
        }
        // The third server, which holds the whole log, is cut off until the two have elected the stream's leader
        // among themselves (it would otherwise win the election with its longer log).
        let third = 3 - index - other
        cluster.signal(third, SIGSTOP)
        try cluster.start(index)
        try cluster.start(other)
        try cluster.waitReady(index, routes: 1)
        try cluster.waitReady(other, routes: 1)
        func ledLog() throws -> UInt64 {
            try retrying(seconds: 60) { () throws -> UInt64 in
                let info = try js.streamInfo("TICKWIRE_TRADES")
                guard info.leader != nil else { throw NATSError(status: 0, operation: "leader", text: "none yet") }
                return info.lastSequence
            }
        }
        let shorter: UInt64
        do { shorter = try ledLog() } catch {
            // Restored stores break Raft's persistent term and vote (beyond the cluster's fault model): the two may
            // not elect a leader within a minute. Then the third comes back, and the check goes on as the log settles.
            print("no stream leader among the two restored servers within 60 s (\(error)); the third is let back")
            cluster.signal(third, SIGCONT)
            shorter = try ledLog()
        }
        cluster.signal(third, SIGCONT)
        sleep(10)
        let all = submitting.finish("after the power loss")
        print("two of three servers lost power: the log held \(before) when their disks were, \(confirmed) acknowledged at the loss, \(shorter) after; \(ledger.summary)")
        try Self.settleAndCheck(pair, ledger, sent: all, "two servers lost power")
    }

    /// The cluster gone: submissions are refused with a clear error (never acknowledged) and market data keeps
    /// flowing; the cluster back: trading resumes by itself.
    @Test func aClusterOutageRefusesTradesThenTradingResumes() throws {
        guard Self.available else { Issue.record("nats-server or the tickwire binary is missing"); return }
        let cluster = try NATSCluster(size: 3)
        let pair = try Pair(cluster: cluster, ackTimeoutMs: 3_000)
        let ledger = Ledger()
        #expect(Self.submit([Self.trade("before")], through: pair, ledger: ledger).count == 1)
        for i in 0..<3 { cluster.kill(i) }
        let ctx = ZMQContext()
        let client = try TradeClient.forDataDirectory(pair.dirs[0], context: ctx, endpoint: "tcp://127.0.0.1:\(pair.tradePorts[0])")
        defer { client.close() }
        let during = try client.submit(Self.trade("during"), timeoutMs: 15_000)
        guard case .reject(_, let why) = during else { Issue.record("acknowledged with no cluster: \(during)"); return }
        #expect(why.code == .replicationUnavailable, "\(why)")
        #expect(why.text.contains("resend the same id") || why.text.contains("not recorded"), "\(why.text)")
        #expect(pair.daemons[0]?.isRunning == true && pair.daemons[1]?.isRunning == true)
        for i in 0..<3 { try cluster.start(i) }
        for i in 0..<3 { try cluster.waitReady(i, routes: 2) }
        let after = Self.submit([Self.trade("during"), Self.trade("after")], through: pair, ledger: ledger, seconds: 120)
        #expect(after.values.allSatisfy { if case .ack = $0 { true } else { false } }, "\(after)")
        sleep(1)
        pair.stop()
        try Self.checkJournals(pair, ledger)
    }
}

extension ReplicatedTradeTests {
    /// A retry after JetStream's duplicate window, through the other daemon: that daemon's own journal index knows
    /// the id, so the client gets the original sequence, and other contents under the id are refused.
    @Test func aRetryAfterTheDuplicateWindowIsStillOneTrade() throws {
        guard Self.available else { Issue.record("nats-server or the tickwire binary is missing"); return }
        let cluster = try NATSCluster(size: 3)
        let pair = try Pair(cluster: cluster, duplicateWindow: 1)
        let ledger = Ledger()
        let first = Self.submit([Self.trade("late")], through: pair, ledger: ledger)
        guard case .ack(_, let seq, false)? = first["late"] else { Issue.record("\(first)"); return }
        sleep(3)
        let ctx = ZMQContext()
        let viaB = try TradeClient.forDataDirectory(pair.dirs[0], context: ctx, endpoint: "tcp://127.0.0.1:\(pair.tradePorts[1])")
        defer { viaB.close() }
        let again = try viaB.submit(Self.trade("late"), timeoutMs: 15_000)
        #expect(again == .ack(clientOrderID: "late", seq: seq, duplicate: true), "\(again)")
        let changed = try viaB.submit(Self.trade("late", qty: 2), timeoutMs: 15_000)
        guard case .reject(_, let why) = changed else { Issue.record("\(changed)"); return }
        #expect(why.code == .idInUse, "\(why)")
        pair.stop()
        try Self.checkJournals(pair, ledger)
        let tail = try DaemonProcess.tickwire(["audit", "tail", "--data", pair.dirs[0], "--count", "5"])
        #expect(tail.stdout.split(separator: "\n").count == 1 && tail.stdout.contains("\"id\":\"late\",\"decision\":\"accepted\""), "\(tail)")
    }

    /// A daemon that joins with an empty journal applies the whole log before it serves, and ends with the same
    /// journal as the others.
    @Test func aNewDaemonCatchesUpFromTheLog() throws {
        guard Self.available else { Issue.record("nats-server or the tickwire binary is missing"); return }
        let cluster = try NATSCluster(size: 3)
        let pair = try Pair(cluster: cluster, nodes: 3)
        let ledger = Ledger()
        let answers = Self.submit((0..<500).map { Self.trade("n\($0)", desk: "D\($0 % 3)", side: $0 % 2 == 0 ? .buy : .sell) },
                                  through: pair, ledger: ledger)
        #expect(answers.count == 500)
        try pair.start(2)
        let ctx = ZMQContext()
        let viaC = try TradeClient.forDataDirectory(pair.dirs[0], context: ctx, endpoint: "tcp://127.0.0.1:\(pair.tradePorts[2])")
        defer { viaC.close() }
        // Refused (catching up) until it has applied the log, then served.
        var reply: TradeReply?
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline {
            reply = try viaC.submit(Self.trade("via-c"), timeoutMs: 15_000)
            if case .ack = reply { break }
            usleep(100_000)
        }
        guard case .ack(_, let seq, _)? = reply else { Issue.record("\(String(describing: reply))"); return }
        ledger.ack("via-c", seq)
        #expect(seq == 501)
        sleep(1)
        pair.stop()
        try Self.checkJournals(pair, ledger, nodes: 3)
    }

    /// Hostile or broken messages put straight into the log (by anything that can publish to its subject) are
    /// recorded by every daemon as the same refusal, at their sequence, naming it; trading goes on, nothing is
    /// lost, and the journals stay identical.
    @Test func garbageInTheLogIsRecordedAsTheSameRefusalByEveryDaemon() throws {
        guard Self.available else { Issue.record("nats-server or the tickwire binary is missing"); return }
        let cluster = try NATSCluster(size: 3)
        let pair = try Pair(cluster: cluster)
        let ledger = Ledger()
        #expect(Self.submit((0..<5).map { Self.trade("g\($0)") }, through: pair, ledger: ledger).count == 5)
        let conn = try NATSConnection(.init(servers: cluster.servers.map(\.url)))
        let js = try conn.jetStream()
        let good = TradeWire.encodeSequenced(Self.trade("forged", qty: 1), receivedNanos: 1, markE8: 0, origin: "x")
        let hostile: [[UInt8]] = [
            [],                                     // empty
            Array(good.prefix(good.count / 2)),     // truncated
            [9] + good.dropFirst(),                 // another version
            Array(repeating: 0xff, count: 300),     // garbage
            good,                                   // well formed, but with no authenticated trader
        ]
        var seqs: [UInt64] = []
        for bytes in hostile { seqs.append(try js.publish("tickwire.trades.requests", bytes: bytes).sequence) }
        #expect(Self.submit((5..<10).map { Self.trade("g\($0)") }, through: pair, ledger: ledger).count == 5)
        pair.stop()
        try Self.checkJournals(pair, ledger)
        for seq in seqs {
            let shown = try DaemonProcess.tickwire(["audit", "show", "--data", pair.dirs[1], "\(seq)"])
            #expect(shown.stdout.contains("\"decision\":\"rejected\""), "seq \(seq): \(shown.stdout)")
            #expect(shown.stdout.contains("log message \(seq) is not a trade request") || shown.stdout.contains("no authenticated trader"),
                    "seq \(seq): \(shown.stdout)")
        }
    }

    /// A journal the log does not back (the stream was deleted and made anew) stops replicated trading on that
    /// daemon with a clear reason: it never trades on a history the others do not share.
    /// Replaces the log with one that holds the same first `keep` messages, then `foreign` others: what a log
    /// that lost a confirmed tail in an election and went on without it looks like to the daemons.
    static func replaceLog(_ cluster: NATSCluster, keep: UInt64, foreign: Int) throws {
        let conn = try NATSConnection(.init(servers: cluster.servers.map(\.url)))
        defer { conn.close() }
        let js = try conn.jetStream()
        let kept = try (1...keep).map { try js.message(stream: "TICKWIRE_TRADES", sequence: $0) }
        try js.deleteStream("TICKWIRE_TRADES")
        var config = JetStream.StreamConfig(name: "TICKWIRE_TRADES", subjects: ["tickwire.trades.requests"])
        config.replicas = 3
        // A loaded machine can take longer than the API's wait to elect the new stream's leader: ask again (the
        // same configuration again is no error).
        var attempt = 0
        while true {
            attempt += 1
            let outcome = Result { () throws(NATSError) in try js.addStream(config) }
            guard case .failure(let error) = outcome, error.isTimeout, attempt < 6 else { _ = try outcome.get(); break }
        }
        for m in kept { _ = try js.publish("tickwire.trades.requests", bytes: m.bytes, msgId: m.msgId) }
        let trader = TradeWire.decodeSequenced(kept[0].bytes)!.request.trader
        for i in 0..<foreign {
            var r = trade("foreign\(i)")
            r.trader = trader
            let bytes = TradeWire.encodeSequenced(r, receivedNanos: Nanos.now().rawValue, markE8: 0, origin: "elsewhere")
            _ = try js.publish("tickwire.trades.requests", bytes: bytes, msgId: ReplicatedTradeTests.msgId(r))
        }
    }

    static func msgId(_ r: TradeRequest) -> String { r.trader + "/" + r.clientOrderID }

    /// The log lost its last confirmed messages and took others at their sequences (while both daemons were
    /// down): at start each daemon reads its journal back against the log, rolls back to the last record they
    /// agree on (the cut records kept in quarantine), puts its accepted trades from them back into the log, and
    /// both journals end identical with every acknowledged trade in them once.
    ///
    /// Their decisions stand: with a position limit of 10, the 10 one-lot buys fill it, and the 2 foreign buys the
    /// new log takes first would leave no room for 2 of the 3 put back, were they judged again; they are reinstated
    /// as accepted instead (an acknowledgement is never taken back).
    @Test func aLogThatLostItsTailIsFollowedByRollingTheJournalsBack() throws {
        guard Self.available else { Issue.record("nats-server or the tickwire binary is missing"); return }
        let cluster = try NATSCluster(size: 3)
        let pair = try Pair(cluster: cluster, risk: "max_position = 10")
        let ledger = Ledger()
        let first = (0..<10).map { Self.trade("x\($0)") }
        #expect(Self.submit(first, through: pair, ledger: ledger).count == 10)
        pair.stop()
        try Self.replaceLog(cluster, keep: 7, foreign: 2)
        try pair.start(0)
        try pair.start(1)
        #expect(Self.submit([Self.trade("after")], through: pair, ledger: ledger).count == 1)
        pair.stop()
        let lost = ledger.acked.filter { $0.value.contains { $0 > 7 } && $0.key.hasPrefix("x") }
        #expect(lost.count == 3, "acknowledged in the lost tail: \(lost)")
        try Self.checkJournals(pair, ledger)
        for i in 0..<2 {
            #expect(pair.logs(i).contains("rolling the journal back to 7"), "node \(i): \(pair.logs(i).suffix(2_000))")
            let quarantine = (try? FileManager.default.contentsOfDirectory(atPath: pair.dirs[i] + "/journal/quarantine")) ?? []
            #expect(!quarantine.isEmpty, "node \(i): the cut records are not kept")
            // Caught up again, each read everything from the cut on back from the stream's leader.
            #expect(pair.logs(i).contains("caught up after the rollback: checking 8…"), "node \(i): \(pair.logs(i).suffix(2_000))")
        }
    }

    /// The log lost its tail and the daemons put the cut trades back, but the cluster never answered those
    /// publishes (an election, a timeout; here a debug build's fail point drops them): each put-back stays owed
    /// and is sent again after the acknowledgement timeout, until the journal holds it. Before, a put-back was
    /// sent once and its answer ignored, and an acknowledged trade could end in neither journal.
    @Test func putBacksTheClusterNeverTookAreSentAgain() throws {
        guard Self.available else { Issue.record("nats-server or the tickwire binary is missing"); return }
        let cluster = try NATSCluster(size: 3)
        let pair = try Pair(cluster: cluster, risk: "max_position = 10", ackTimeoutMs: 3_000)
        let ledger = Ledger()
        #expect(Self.submit((0..<10).map { Self.trade("x\($0)") }, through: pair, ledger: ledger).count == 10)
        try #require(pair.journalHolds(0, 10) && pair.journalHolds(1, 10))
        pair.stop()
        try Self.replaceLog(cluster, keep: 7, foreign: 2)
        for i in 0..<2 { try pair.start(i, environment: ["TICKWIRE_DEBUG_DROP_PUTBACKS": "3"]) }
        #expect(Self.submit([Self.trade("after")], through: pair, ledger: ledger).count == 1)
        // 7 kept, 2 foreign, 3 put back, "after"; each daemon sees its put-backs back.
        #expect(pair.journalHolds(0, 13) && pair.journalHolds(1, 13), "\(pair.logs(0).suffix(2_000))")
        for i in 0..<2 {
            #expect(pair.logs(i, contain: "is back in the log and the journal"), "node \(i): \(pair.logs(i).suffix(2_000))")
        }
        pair.stop()
        try Self.checkJournals(pair, ledger)
    }

    /// Ten trades through the pair, then, both daemons down, node 1's journal removed and the log replaced by its
    /// first seven messages and two foreign ones: node 0 alone holds x7…x9, which it must put back.
    static func loseTheLogsTailHeldByNodeZero(_ pair: Pair, _ cluster: NATSCluster, _ ledger: Ledger) throws {
        #expect(submit((0..<10).map { trade("x\($0)") }, through: pair, ledger: ledger).count == 10)
        try #require(pair.journalHolds(0, 10))
        pair.stop()
        try FileManager.default.removeItem(atPath: pair.dirs[1] + "/journal")
        try replaceLog(cluster, keep: 7, foreign: 2)
    }

    /// A daemon killed after its rollback and before its put-backs reached the log (they are dropped until the
    /// kill) puts them back after its restart, from `journal/putback/`: it was the only one holding them (the
    /// other's journal was made anew from the log), so without the file they would be lost.
    @Test func putBacksOutliveAKill() throws {
        guard Self.available else { Issue.record("nats-server or the tickwire binary is missing"); return }
        let cluster = try NATSCluster(size: 3)
        let pair = try Pair(cluster: cluster, ackTimeoutMs: 3_000)
        let ledger = Ledger()
        try Self.loseTheLogsTailHeldByNodeZero(pair, cluster, ledger)
        try pair.start(0, environment: ["TICKWIRE_DEBUG_DROP_PUTBACKS": "1000"])
        #expect(pair.logs(0, contain: "journal rolled back"))
        usleep(1_500_000)   // its put-backs are sent (and dropped)
        pair.kill9(0)
        let conn = try NATSConnection(.init(servers: cluster.servers.map(\.url)))
        defer { conn.close() }
        // The premise: nothing was put back before the kill.
        #expect(try conn.jetStream().streamInfo("TICKWIRE_TRADES").lastSequence == 9, "\(pair.logs(0).suffix(2_000))")
        let pending = try FileManager.default.contentsOfDirectory(atPath: pair.dirs[0] + "/journal/putback")
        #expect(pending.filter { $0.hasSuffix(".putback") }.count == 1, "\(pending)")
        try pair.start(0)
        try pair.start(1)
        #expect(Self.submit([Self.trade("after")], through: pair, ledger: ledger).count == 1)
        #expect(pair.journalHolds(0, 13) && pair.journalHolds(1, 13), "\(pair.logs(0).suffix(2_000))")
        #expect(pair.logs(0, contain: "is back in the log and the journal"), "\(pair.logs(0).suffix(2_000))")
        pair.stop()
        try Self.checkJournals(pair, ledger)
        #expect(pair.logs(0).contains("3 trade(s) cut by an earlier rollback go back into the log"), "\(pair.logs(0).suffix(2_000))")
        let settled = try FileManager.default.contentsOfDirectory(atPath: pair.dirs[0] + "/journal/putback")
        #expect(settled.filter { $0.hasSuffix(".putback.settled") }.count == 1, "\(settled)")
    }

    /// A put-back file damaged on disk (a byte flipped) while its daemon was down: the daemon starts, names the
    /// file in its log and counts it, and trades on. Its trades were acknowledged and are gone from the log, so they
    /// are what an operator must recover: the rollback's copy of them is in `journal/quarantine/`.
    @Test func aDamagedPutBackFileIsNamedCountedAndTradingGoesOn() throws {
        guard Self.available else { Issue.record("nats-server or the tickwire binary is missing"); return }
        let cluster = try NATSCluster(size: 3)
        let pair = try Pair(cluster: cluster, ackTimeoutMs: 3_000)
        let ledger = Ledger()
        try Self.loseTheLogsTailHeldByNodeZero(pair, cluster, ledger)
        try pair.start(0, environment: ["TICKWIRE_DEBUG_DROP_PUTBACKS": "1000"])
        #expect(pair.logs(0, contain: "journal rolled back"))
        pair.kill9(0)
        let folder = pair.dirs[0] + "/journal/putback"
        let name = try #require(try FileManager.default.contentsOfDirectory(atPath: folder).first { $0.hasSuffix(".putback") })
        var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: folder + "/" + name)))
        bytes[bytes.count / 2] ^= 0x40
        try Data(bytes).write(to: URL(fileURLWithPath: folder + "/" + name))
        try pair.start(0)
        try pair.start(1)
        #expect(pair.logs(0, contain: "journal/putback/\(name) is damaged and cannot be read"), "\(pair.logs(0).suffix(2_000))")
        let counted = { metric(pair.metricsPorts[0], "tickwire_trades_replication_putback_files_damaged_total") }
        let deadline = Date().addingTimeInterval(10)
        while counted() != 1 && Date() < deadline { usleep(100_000) }
        #expect(counted() == 1)
        #expect(Self.submit([Self.trade("after")], through: pair, ledger: ledger).count == 1)
        // The log: the 7 kept, the 2 it gained, and the one after.
        #expect(pair.journalHolds(0, 10) && pair.journalHolds(1, 10), "\(pair.logs(0).suffix(2_000))")
        pair.stop()
        // The three trades the rollback cut are in its quarantine copy, and in no journal.
        let quarantine = try FileManager.default.contentsOfDirectory(atPath: pair.dirs[0] + "/journal/quarantine")
        let kept = try quarantine.map { try Data(contentsOf: URL(fileURLWithPath: pair.dirs[0] + "/journal/quarantine/" + $0)) }
        for id in ["x7", "x8", "x9"] {
            #expect(kept.contains { $0.range(of: Data(id.utf8)) != nil }, "\(id) is not in quarantine/ (\(quarantine))")
        }
        // Left as it was: reported again at the next start, never read as trades.
        #expect(FileManager.default.fileExists(atPath: folder + "/" + name))
    }

    /// The same while both daemons run: the log's end falls behind what they applied, they find the last record
    /// they agree on, roll back and go on; a trade submitted after is acknowledged and both journals end alike.
    @Test func aLogThatLosesItsTailWhileTradingIsFollowedByRollingBack() throws {
        guard Self.available else { Issue.record("nats-server or the tickwire binary is missing"); return }
        let cluster = try NATSCluster(size: 3)
        let pair = try Pair(cluster: cluster)
        let ledger = Ledger()
        #expect(Self.submit((0..<10).map { Self.trade("x\($0)") }, through: pair, ledger: ledger).count == 10)
        // The premise: both have applied all ten (one may join the log late while the new cluster elects).
        try #require(pair.journalHolds(0, 10) && pair.journalHolds(1, 10))
        try Self.replaceLog(cluster, keep: 7, foreign: 2)
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline && !(0..<2).allSatisfy({ pair.logs($0).contains("journal rolled back") }) { usleep(200_000) }
        #expect(Self.submit((0..<5).map { Self.trade("y\($0)") }, through: pair, ledger: ledger).count == 5)
        pair.stop()
        try Self.checkJournals(pair, ledger)
        // Each finds where the log ends or differs while the test puts it back together (and may have applied
        // some of the new log by then), so where it cuts from and to varies; either way both journals end alike.
        for i in 0..<2 { #expect(pair.logs(i).contains("journal rolled back from "), "node \(i): \(pair.logs(i).suffix(2_000))") }
    }

    /// The log loses its tail while one daemon is down; the other rolls back and puts its cut trades back into the
    /// log in the same order, so the log holds the same bytes at the same sequences again, under new log times.
    /// The daemon that comes back finds its journal agrees with the log and keeps it: the two journals must still
    /// be identical, record for record (times included), with the same head.
    @Test func tradesPutBackIntoTheLogInTheirOrderLeaveBothJournalsAlike() throws {
        guard Self.available else { Issue.record("nats-server or the tickwire binary is missing"); return }
        let cluster = try NATSCluster(size: 3)
        let pair = try Pair(cluster: cluster)
        let ledger = Ledger()
        #expect(Self.submit((0..<10).map { Self.trade("x\($0)") }, through: pair, ledger: ledger).count == 10)
        // The premise: the daemon that stays up holds all ten (it may have joined the log late, while the new
        // cluster elected its leaders; a CI run killed the other before it had applied any).
        try #require(pair.journalHolds(1, 10), "\(pair.logs(1).suffix(2_000))")
        pair.kill9(0)
        try Self.replaceLog(cluster, keep: 3, foreign: 0)
        let conn = try NATSConnection(.init(servers: cluster.servers.map(\.url)))
        defer { conn.close() }
        let deadline = Date().addingTimeInterval(60)
        func logHoldsTen() -> Bool { ((try? conn.jetStream().streamInfo("TICKWIRE_TRADES").lastSequence) ?? 0) >= 10 }
        while Date() < deadline && !(pair.logs(1).contains("journal rolled back from 10 to 3") && logHoldsTen()) { usleep(200_000) }
        #expect(logHoldsTen(), "\(pair.logs(1).suffix(2_000))")
        try pair.start(0)
        #expect(Self.submit([Self.trade("after")], through: pair, ledger: ledger).count == 1)
        pair.stop()
        try Self.checkJournals(pair, ledger)
    }

    /// A damaged sector in the middle of one daemon's journal: in a pair the log holds every acknowledged record,
    /// so that daemon cuts its journal back to the last good record at start (a copy in quarantine), applies the
    /// log again, and ends with the same journal as the other; no operator is needed.
    @Test func aDamagedJournalInAPairIsRepairedFromTheLog() throws {
        guard Self.available else { Issue.record("nats-server or the tickwire binary is missing"); return }
        let cluster = try NATSCluster(size: 3)
        let pair = try Pair(cluster: cluster)
        let ledger = Ledger()
        #expect(Self.submit((0..<30).map { Self.trade("d\($0)") }, through: pair, ledger: ledger).count == 30)
        pair.stop()
        let journal = pair.dirs[0] + "/journal"
        try Self.flipPayloadByte(journal: journal, seq: 12)
        #expect(!(try JournalAudit.verify(directory: journal)).ok)
        try pair.start(0)
        try pair.start(1)
        #expect(Self.submit([Self.trade("after")], through: pair, ledger: ledger).count == 1)
        pair.stop()
        try Self.checkJournals(pair, ledger)
        #expect(pair.logs(0).contains("journal: DAMAGE at record seq 12"), "\(pair.logs(0).suffix(2_000))")
        #expect(!((try? FileManager.default.contentsOfDirectory(atPath: journal + "/quarantine")) ?? []).isEmpty)
    }

    /// One daemon's disk fills while clients trade through both: it refuses at once (the clients go on through
    /// the other), acknowledges nothing it has not journaled, and once the disk has room again it applies what
    /// the log took meanwhile and ends with the same journal as the other.
    @Test func aFullDiskOnOneDaemonLosesNothingAndItCatchesUpAfter() throws {
        guard Self.available else { Issue.record("nats-server or the tickwire binary is missing"); return }
        try withTmpfs(size: "256m") { disk in
            let cluster = try NATSCluster(size: 3)
            try FileManager.default.createDirectory(atPath: disk.path + "/a", withIntermediateDirectories: true)
            let pair = try Pair(cluster: cluster, dataDirectories: [0: disk.path + "/a"])
            let ledger = Ledger()
            #expect(Self.submit((0..<20).map { Self.trade("before\($0)") }, through: pair, ledger: ledger).count == 20)
            let filler = disk.path + "/filler"
            try fill(filler, leavingFree: 64 << 10)
            // Enough trades to need more than the room left (each decision record is ~200 bytes).
            let during = (0..<2_000).map { Self.trade("full\($0)") }
            #expect(Self.submit(during, through: pair, ledger: ledger).count == during.count)
            #expect(pair.logs(0).contains("journal: stopped on"), "\(pair.logs(0).suffix(2_000))")
            try FileManager.default.removeItem(atPath: filler)
            #expect(Self.submit((0..<20).map { Self.trade("after\($0)") }, through: pair, ledger: ledger).count == 20)
            pair.stop()
            try Self.checkJournals(pair, ledger)
            #expect(pair.logs(0).contains("resumed at seq"), "\(pair.logs(0).suffix(2_000))")
        }
    }

    /// A rollback on a full disk: the daemon cannot write down the trades it would cut, so it cuts nothing, says
    /// so and tries again every second; once the disk has room it rolls back, puts them back into the log, and ends
    /// with the same journal as the other (every acknowledged trade in both).
    @Test func aRollbackOnAFullDiskWaitsForRoomAndLosesNothing() throws {
        guard Self.available else { Issue.record("nats-server or the tickwire binary is missing"); return }
        try withTmpfs(size: "256m") { disk in
            let cluster = try NATSCluster(size: 3)
            try FileManager.default.createDirectory(atPath: disk.path + "/a", withIntermediateDirectories: true)
            let pair = try Pair(cluster: cluster, dataDirectories: [0: disk.path + "/a"])
            let ledger = Ledger()
            try Self.loseTheLogsTailHeldByNodeZero(pair, cluster, ledger)
            let filler = disk.path + "/filler"
            try fill(filler, leavingFree: 0)
            try pair.start(0)
            #expect(pair.logs(0, contain: "the journal is not rolled back yet"), "\(pair.logs(0).suffix(2_000))")
            usleep(2_500_000)   // a few more tries, on a disk still full
            #expect(!pair.logs(0).contains("journal rolled back"), "\(pair.logs(0).suffix(2_000))")
            try FileManager.default.removeItem(atPath: filler)
            #expect(pair.logs(0, contain: "journal rolled back"), "\(pair.logs(0).suffix(2_000))")
            try pair.start(1)
            #expect(Self.submit([Self.trade("after")], through: pair, ledger: ledger).count == 1)
            #expect(pair.converged(), "\(pair.logs(0).suffix(2_000))")
            pair.stop()
            try Self.checkJournals(pair, ledger)
            #expect(pair.logs(0).components(separatedBy: "the journal is not rolled back yet").count == 2, "logged once")
        }
    }

    /// Damage in a segment that a checkpointed start did not read, found by the journal's verifier while the
    /// daemon runs: in a pair the daemon cuts its journal back to the record before it and applies the log again,
    /// and ends with the same journal as the other.
    @Test func damageTheVerifierFindsWhileRunningIsRepairedFromTheLog() throws {
        guard Self.available else { Issue.record("nats-server or the tickwire binary is missing"); return }
        let cluster = try NATSCluster(size: 3)
        let pair = try Pair(cluster: cluster)
        let ledger = Ledger()
        // Several 64 KiB segments, and a checkpoint at the stop, so that the next start reads only the last one.
        #expect(Self.submit((0..<1_500).map { Self.trade("v\($0)") }, through: pair, ledger: ledger).count == 1_500)
        pair.stop()
        let journal = pair.dirs[0] + "/journal"
        let victim = try Self.flipPayloadByte(journal: journal, seq: 40)
        #expect(victim.segment == JournalFormat.segmentName(firstSeq: 1))
        try pair.start(0)
        try pair.start(1)
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline && !pair.logs(0).contains("journal rolled back") { usleep(200_000) }
        #expect(Self.submit([Self.trade("after")], through: pair, ledger: ledger).count == 1)
        pair.stop()
        try Self.checkJournals(pair, ledger)
        #expect(pair.logs(0).contains("the journal's verifier found damage"), "\(pair.logs(0).suffix(3_000))")
    }

    @Test func aJournalAheadOfTheLogStopsTradingWithAReason() throws {
        guard Self.available else { Issue.record("nats-server or the tickwire binary is missing"); return }
        let cluster = try NATSCluster(size: 3)
        let pair = try Pair(cluster: cluster)
        let ledger = Ledger()
        #expect(Self.submit((0..<10).map { Self.trade("x\($0)") }, through: pair, ledger: ledger).count == 10)
        pair.stop()
        let conn = try NATSConnection(.init(servers: cluster.servers.map(\.url)))
        try conn.jetStream().deleteStream("TICKWIRE_TRADES")
        try pair.start(0)
        let ctx = ZMQContext()
        let viaA = try TradeClient.forDataDirectory(pair.dirs[0], context: ctx, endpoint: "tcp://127.0.0.1:\(pair.tradePorts[0])")
        defer { viaA.close() }
        var text = ""
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline && !text.contains("the log was lost") {
            let reply = try viaA.submit(Self.trade("y"), timeoutMs: 15_000)
            guard case .reject(_, let why) = reply else { Issue.record("acknowledged on a lost log: \(reply)"); return }
            text = why.text
            usleep(100_000)
        }
        #expect(text.contains("journal holds 10 records but the replicated log TICKWIRE_TRADES only 0"), "\(text)")
        #expect(pair.stderr(0).contains("replicated trading STOPPED"))
    }
}

extension ReplicatedTradeTests {
    /// The periods each node held the market-data lease, from its log: [ACTIVE since, PASSIVE at or killed].
    static func activePeriods(_ log: String, killedAt: [Int64]) -> [ClosedRange<Int64>] {
        var periods: [ClosedRange<Int64>] = []
        var since: Int64?
        let kills = killedAt.sorted()
        func number(after marker: String, in line: Substring) -> Int64? {
            guard let r = line.range(of: marker) else { return nil }
            return Int64(line[r.upperBound...].prefix { $0.isNumber })
        }
        for line in log.split(separator: "\n") {
            if let t = number(after: "market data: ACTIVE since ", in: line) {
                // A start after a kill: the previous period ended at the kill.
                if let s = since { let end = kills.first { $0 >= s } ?? t; periods.append(s...max(s, end)) }
                since = t
            } else if let t = number(after: "market data: PASSIVE at ", in: line), let s = since {
                periods.append(s...max(s, t)); since = nil
            }
        }
        if let s = since { periods.append(s...(kills.first { $0 >= s } ?? Int64.max)) }
        return periods
    }

    /// Both daemons publish market data to NATS when they hold the lease: a late joiner's snapshot request is
    /// answered by the holder alone (two answers would interleave their chunks), and after the holder dies the
    /// other answers, with what it published since it took over.
    @Test func onlyTheLeaseholderAnswersSnapshotRequests() throws {
        guard Self.available else { Issue.record("nats-server or the tickwire binary is missing"); return }
        let cluster = try NATSCluster(size: 3)
        let pair = try Pair(cluster: cluster, trades: "md_lease_ms = 1200", publishNATS: true)
        let conn = try NATSConnection(.init(servers: cluster.servers.map(\.url)))
        defer { conn.close() }
        /// The first chunks of every answer to one request for everything, within two seconds.
        func answers() throws -> [(count: Int, entries: Int)] {
            let inbox = "_INBOX.snapshot-test.\(UInt32.random(in: 0...UInt32.max))"
            let sub = try conn.subscribeSync(inbox)
            defer { sub.unsubscribe() }
            try conn.publish(subject: SnapshotCodec.requestSubject, bytes: Array("MD.>".utf8), reply: inbox)
            var firsts: [(Int, Int)] = []
            let until = Date().addingTimeInterval(2)
            while Date() < until, let chunk = sub.next(timeoutMs: 200, { $0.bytes }) {
                if let c = SnapshotCodec.decode(chunk: chunk), c.index == 0 { firsts.append((c.count, c.entries.count)) }
            }
            return firsts
        }
        var first: [(count: Int, entries: Int)] = []
        try retrying(seconds: 30) {
            first = try answers()
            guard first.first.map({ $0.entries > 0 }) == true else { throw POSIXError(.EAGAIN) }
        }
        #expect(first.count == 1, "answers to one request: \(first.count)")
        let holder = pair.logs(0).contains("ACTIVE") && !pair.logs(1).contains("ACTIVE") ? 0 : (pair.logs(1).contains("ACTIVE") ? 1 : 0)
        pair.kill9(holder)
        var after: [(count: Int, entries: Int)] = []
        try retrying(seconds: 30) {
            after = try answers()
            guard after.first.map({ $0.entries > 0 }) == true else { throw POSIXError(.EAGAIN) }
        }
        #expect(after.count == 1, "answers to one request after the takeover: \(after.count)")
    }

    /// Both daemons race for the market-data lease (started together, again and again, and the holder killed):
    /// never two publishers at once, the other takes over, and subscribers connected to both see each takeover
    /// as one SYS.TAKEOVER notice naming the time range they may have missed.
    @Test func exactlyOneDaemonPublishesMarketDataAtATime() throws {
        guard Self.available else { Issue.record("nats-server or the tickwire binary is missing"); return }
        let cluster = try NATSCluster(size: 3)
        let pair = try Pair(cluster: cluster, trades: "md_lease_ms = 1200", startBoth: false)
        let ctx = ZMQContext()
        let sub = try ctx.socket(.sub)
        try sub.subscribe("SYS.TAKEOVER")
        for port in pair.pubPorts { try sub.connect("tcp://127.0.0.1:\(port)") }
        // Read as they come (a subscriber that keeps up), on a thread of its own.
        let received = Locked2([(from: Int64, to: Int64)]())
        let reading = Locked2(true)
        let reader = Thread {
            while reading.get() {
                guard let ready = try? ZMQ.poll([(sub, .readable)], timeoutMs: 50), ready[0].contains(.readable),
                      let frames = try? sub.receiveMultipart(dontWait: true) else { continue }
                if frames.count == 2, String(decoding: frames[0], as: UTF8.self) == "SYS.TAKEOVER", let e = try? WireCodec.decode(frames[1]) {
                    var r = received.get(); r.append((e.event.a, e.event.b)); received.set(r)
                }
            }
        }
        reader.start()
        var kills: [[Int64]] = [[], []]
        func killBoth() { for i in 0..<2 { kills[i].append(Nanos.now().rawValue); pair.kill9(i) } }
        // Races: both start at once, several times.
        kills[0].append(Nanos.now().rawValue)
        pair.kill9(0)
        for _ in 0..<4 {
            let started = try (0..<2).map { i -> ChildProcess in
                try ChildProcess(tickwireBinary, ["run", "--config", pair.dirs[i] + "/tickwire.toml", "--rate", "100"])
            }
            sleep(4)
            for (i, c) in started.enumerated() { kills[i].append(Nanos.now().rawValue); c.kill9() ; pair.adopt(i, c) }
        }
        // Takeovers: the holder killed, the other takes the lease (and announces it on SYS.TAKEOVER).
        try pair.start(0); try pair.start(1)
        func lastActive(_ i: Int) -> Int64 {
            pair.logs(i).components(separatedBy: "market data: ACTIVE since ").dropFirst()
                .compactMap { Int64($0.prefix { $0.isNumber }) }.max() ?? 0
        }
        var takeoversExpected = 0
        for round in 0..<3 {
            sleep(3)
            let holder = lastActive(0) > lastActive(1) ? 0 : 1, other = 1 - holder
            let killed = Nanos.now().rawValue
            kills[holder].append(killed)
            pair.kill9(holder)
            sleep(4)
            #expect(lastActive(other) > killed, "round \(round): node \(other) did not take over after node \(holder) died")
            if lastActive(other) > killed { takeoversExpected += 1 }
            try pair.start(holder)
        }
        sleep(2)
        reading.set(false)
        usleep(200_000)
        let notices = received.get().count
        for r in received.get() { #expect(r.from > 0 && r.to >= r.from, "a takeover notice names a time range") }
        killBoth()
        let a = Self.activePeriods(pair.logs(0), killedAt: kills[0]), b = Self.activePeriods(pair.logs(1), killedAt: kills[1])
        #expect(!a.isEmpty && !b.isEmpty, "both held the lease at some point: \(a.count), \(b.count)")
        for x in a { for y in b { #expect(!x.overlaps(y), "two publishers at once: \(x) and \(y)") } }
        #expect(notices >= takeoversExpected, "\(notices) SYS.TAKEOVER notices for \(takeoversExpected) takeovers")
        print("market-data lease: \(a.count) + \(b.count) periods held, \(notices) takeover notices")

    }
}


final class Locked2<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var v: T
    init(_ v: T) { self.v = v }
    func get() -> T { lock.lock(); defer { lock.unlock() }; return v }
    func set(_ n: T) { lock.lock(); v = n; lock.unlock() }
}
