import Foundation
import Testing
import TickwireClient
import TickwireCore
import TickwireNATS
import TickwireTestSupport
import TickwireZMQ
@testable import TickwireDaemon
#if canImport(Glibc)
import Glibc
#endif

/// The late joiner: the last value of every subject matching its patterns first, then the live stream stitched on
/// by subject_seq — nothing missed, nothing repeated.
@Suite(.serialized, .timeLimit(.minutes(10))) struct NATSSnapshotTests {
    @Test func aLateJoinerGetsEveryLastValueThenTheLiveStreamWithoutAHoleOrARepeat() throws {
        let cluster = try NATSCluster(size: 3, jetStream: false)
        let reference = try NATSRawCollector(server: cluster.servers[0].url, pattern: "MD.>")
        try natsWaitUntil(seconds: 20, "interest") { subscriptionCount(cluster, 0) >= 1 }
        let daemon = try DaemonProcess(["--rate", "3000", "--nats", cluster.servers[0].url])
        try natsWaitUntil(seconds: 30, "feed") { reference.count > 5_000 }
        let patterns = [try SubjectPattern("MD.XNAS.>"), try SubjectPattern("MD.*.MSFT.TRADE")]
        let joiner = try Subscriber(nats: [cluster.servers[2].url], patterns: patterns, snapshot: true)
        let entries = try #require(joiner.snapshotEntries)
        var got: [WireEvent] = []
        var gaps = 0
        let until = Date().addingTimeInterval(3)
        while Date() < until, let d = try joiner.next(timeoutMs: 1_000) {
            if case .event(let w) = d, !w.subject.hasPrefix(Subscriber.gapNoticePrefix) { got.append(w) } else { gaps += 1 }
        }
        // The reference (another connection, another thread) may still be behind the joiner: wait until it holds
        // the joiner's every message, or for what it will not get.
        let keys = Set(got.map { "\($0.subject)#\($0.subjectSeq)" })
        try? natsWaitUntil(seconds: 10, "the reference catches up") {
            keys.isSubset(of: reference.events.map { "\($0.subject)#\($0.subjectSeq)" })
        }
        let all = reference.events
        // A gap only for what the daemon counted as not sent (its connection declared stale on a loaded machine;
        // NATSPublishTests says more), and then the holes are exactly where the reference has none either.
        let lost = daemon.natsNotSent
        let why = "\(holes(in: got, reference: all)); \(reference.connectionReport); \(daemon.natsReport)"
        #expect(lost > 0 || gaps == 0, "\(why)")
        #expect(entries > 0 && got.count > entries + 1_000)
        let snapshot = got.prefix(entries)
        // One entry per subject (the sim publishes no BOOK), every subject seen so far that the patterns match.
        #expect(Set(snapshot.map(\.subject)).count == entries)
        let seenBefore = Set(all.map(\.subject).filter { s in patterns.contains { $0.matches(subjectText: s) } })
        #expect(Set(snapshot.map(\.subject)) == seenBefore)
        // Stitched: per subject, the snapshot's subject_seq and then every following one, each once.
        for (subject, seqs) in got.seqsBySubject where lost == 0 {
            #expect(seqs == Array(seqs[0]...(seqs[0] + UInt64(seqs.count) - 1)), "\(subject): \(seqs.prefix(5))…")
        }
        #expect(!why.contains("reference has it"), "\(why)")
        // And each is what was published.
        let byKey = Dictionary(uniqueKeysWithValues: all.map { ("\($0.subject)#\($0.subjectSeq)", $0) })
        #expect(got.allSatisfy { byKey["\($0.subject)#\($0.subjectSeq)"] == $0 })
        withExtendedLifetime(daemon) {}
    }

    /// Each hole in a subscriber's subject_seqs, and whether the reference (on the daemon's own server) has it: if
    /// it does, the message was lost between the servers or at the subscriber; if not, before the first server.
    private func holes(in got: [WireEvent], reference: [WireEvent]) -> String {
        let known = Set(reference.map { "\($0.subject)#\($0.subjectSeq)" })
        var out: [String] = []
        for (subject, seqs) in got.seqsBySubject {
            for (a, b) in zip(seqs, seqs.dropFirst()) where b > a + 1 {
                for missing in (a + 1)..<b { out.append("\(subject)#\(missing) (reference \(known.contains("\(subject)#\(missing)") ? "has it" : "lacks it"))") }
            }
        }
        return "holes: \(out.prefix(10))"
    }

    /// The same over ZeroMQ: the daemon's snapshot socket (`--snapshot-endpoint`), answered by the ZeroMQ
    /// publisher between batches, then the PUB stream stitched on.
    @Test func overZeroMQTheSnapshotSocketGivesTheSameStitchedStart() throws {
        let snapshotEndpoint = "tcp://127.0.0.1:\(freePort())"
        let daemon = try DaemonProcess(["--rate", "3000", "--snapshot-endpoint", snapshotEndpoint])
        let reference = try Subscriber(endpoint: daemon.pub, patterns: [try SubjectPattern("MD.>")])
        usleep(2_000_000)
        let patterns = [try SubjectPattern("MD.XNAS.>"), try SubjectPattern("MD.*.MSFT.TRADE")]
        let joiner = try Subscriber(endpoint: daemon.pub, patterns: patterns, snapshot: snapshotEndpoint)
        let entries = try #require(joiner.snapshotEntries)
        var got: [WireEvent] = []
        var gaps = 0
        let until = Date().addingTimeInterval(3)
        while Date() < until, let d = try joiner.next(timeoutMs: 1_000) {
            if case .event(let w) = d { got.append(w) } else { gaps += 1 }
        }
        #expect(gaps == 0)
        #expect(entries > 20 && got.count > entries + 1_000)
        #expect(Set(got.prefix(entries).map(\.subject)).count == entries)
        for (subject, seqs) in got.seqsBySubject {
            #expect(seqs == Array(seqs[0]...(seqs[0] + UInt64(seqs.count) - 1)), "\(subject): \(seqs.prefix(5))…")
        }
        // Entries are what was published: the reference (joined earlier) saw the same numbers with the same bodies.
        var seen: [String: WireEvent] = [:]
        // What it has queued so far (the feed goes on: read until it has nothing waiting, not until quiet).
        while let d = try reference.poll() { if case .event(let w) = d { seen["\(w.subject)#\(w.subjectSeq)"] = w } }
        let checkable = got.prefix(entries).filter { seen["\($0.subject)#\($0.subjectSeq)"] != nil }
        #expect(checkable.count > entries / 2)
        #expect(checkable.allSatisfy { seen["\($0.subject)#\($0.subjectSeq)"] == $0 })
        // A request that is not patterns gets an empty answer, and the daemon goes on.
        let ctx = ZMQContext()
        let req = try ctx.socket(.req)
        try req.connect(snapshotEndpoint)
        try req.setReceiveTimeout(milliseconds: 5_000)
        _ = try req.send(Array("MD..X".utf8))
        let reply = try #require(try req.receiveMultipart())
        #expect(reply.count == 1 && SnapshotCodec.decode(chunk: reply[0])?.entries.isEmpty == true)
        #expect(daemon.child.isRunning)
    }

    /// `tickwire ticker --nats` opens full: with the feed over, its first screen still has every row.
    @Test func theTickerOpensFull() throws {
        let cluster = try NATSCluster(size: 1, jetStream: false)
        let daemon = try DaemonProcess(["--config", simConfig(rate: 5_000, limit: 5_000), "--nats", cluster.servers[0].url])
        // The feed is over once every event was sent to NATS or counted as not sent (a loaded machine can leave
        // the NATS thread a queue behind: those are dropped and counted, and the snapshot does not need them).
        func handled() -> (sent: Double, failed: Double) {
            let port = daemon.metricsPort
            return (metric(port, "tickwire_nats_sent_total") ?? 0,
                    (metric(port, "tickwire_nats_failed_total", "reason=\"queue_full\"") ?? 0)
                        + (metric(port, "tickwire_nats_failed_total", "reason=\"send_failed\"") ?? 0))
        }
        do { try natsWaitUntil(seconds: 60, "feed over") { let h = handled(); return h.sent + h.failed >= 5_000 } } catch {
            Issue.record("feed not over after 60 s: \(handled()) sent/failed of 5,000; daemon: \(daemon.child.stderr.suffix(2_000))")
            throw error
        }
        usleep(500_000)
        let r = try DaemonProcess.tickwire(["ticker", "--nats", cluster.servers[0].url, "MD.XNAS.*.QUOTE", "MD.XNAS.*.TRADE",
                                            "--interval", "0.5", "--duration", "1.2", "--no-status"], seconds: 60)
        #expect(r.status == 0, "\(r.stderr)")
        let firstScreen = r.stdout.split(separator: "\n").filter { $0.contains(" XNAS ") }
        for symbol in ["AAPL", "MSFT"] { #expect(firstScreen.contains { $0.contains(" \(symbol) ") }, "\(r.stdout.prefix(2000))") }
        // Without the snapshot the same ticker shows no rows (nothing is live any more).
        let zmq = try DaemonProcess.tickwire(["ticker", "--connect", daemon.pub, "MD.XNAS.*.QUOTE", "--interval", "0.5",
                                              "--duration", "1.2", "--no-status"], seconds: 60)
        #expect(!zmq.stdout.contains(" XNAS "))
    }

    /// The last-value table: one slot per subject, one per side and level of a book, GAPs left out; the chunks
    /// decode back to the same entries.
    @Test func lastValuesKeepEveryBookLevelAndRoundTrip() throws {
        let subjects = SubjectTable()
        let quote = subjects.intern(text: "MD.XNAS.AAPL.QUOTE"), book = subjects.intern(text: "MD.XNAS.AAPL.BOOK")
        let gap = subjects.intern(text: "MD.XNAS._FEED.GAP")
        var table = PublishedLastValues()
        func put(_ id: SubjectID, _ e: Event, _ seq: UInt64) {
            var e = e
            e.seq = seq
            let p = WireCodec.encode(e, subjectSeq: seq)
            p.withUnsafeBytes { table.update(id, $0) }
        }
        let t = Nanos(1)
        for i in 1...3 { put(quote, .quote(quote, bid: Price(e8: Int64(i)), bidSize: .zero, ask: .zero, askSize: .zero, eventTime: t, knownTime: t), UInt64(i)) }
        for (i, (side, level)) in [(1, 0), (1, 1), (2, 0), (1, 0)].enumerated() {
            put(book, Event(subjectID: book, kind: .book, flags: UInt8(side), eventTime: t, knownTime: t, a: Int64(100 + i), c: Int64(level)), UInt64(i + 1))
        }
        put(gap, .gap(gap, first: 1, last: 2, scope: .source, eventTime: t, knownTime: t), 1)
        #expect(table.count == 4)
        let chunks = table.snapshot(matching: [try SubjectPattern("MD.>")], subjects: subjects)
        let decoded = chunks.compactMap { SnapshotCodec.decode(chunk: $0) }.flatMap(\.entries)
        #expect(decoded.map(\.subject) == ["MD.XNAS.AAPL.QUOTE", "MD.XNAS.AAPL.BOOK", "MD.XNAS.AAPL.BOOK", "MD.XNAS.AAPL.BOOK"])
        #expect(decoded[0].subjectSeq == 3 && decoded[0].event.a == 3)
        #expect(decoded[1].event.a == 103 && decoded[2].event.a == 101 && decoded[3].event.a == 102)
        #expect(table.snapshot(matching: [try SubjectPattern("MD.*.AAPL.QUOTE")], subjects: subjects).compactMap { SnapshotCodec.decode(chunk: $0) }.flatMap(\.entries).count == 1)
        #expect(SnapshotCodec.decode(chunk: Array(chunks[0].prefix(30))) == nil)
    }
}
