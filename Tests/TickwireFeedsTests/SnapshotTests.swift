import Foundation
import Testing
import TickwireCore
@testable import TickwireFeeds

/// GLIMPSE-style snapshots: what a snapshot holds, a handler that starts mid-session, and
/// books made stale by an unrecoverable gap and rebuilt from a snapshot — each checked against an oracle, a
/// fresh normalizer fed the whole file.
@Suite(.serialized) struct SnapshotTests {
    static let date = try! TradingDate(parsing: "2019-12-30")
    let loopback0 = try! UDPEndpoint(parsing: "127.0.0.1:0")

    /// Every message of the fixture, copied.
    static let messages: [[UInt8]] = {
        let bytes = Fixture.bytes(Fixture.itchSlice)
        return bytes.withUnsafeBytes { b in
            var reader = BinaryFILEReader(b)
            var out: [[UInt8]] = []
            while let m = try! reader.next() { out.append(Array(UnsafeRawBufferPointer(start: m.base, count: m.length))) }
            return out
        }
    }()

    /// A normalizer fed every message: the books a handler that saw everything ends with.
    static func oracle(depth: Int = 0) -> (ITCHNormalizer, CollectingSink) {
        let sink = CollectingSink()
        let n = ITCHNormalizer(sink: sink, clock: EasternClock(date: date))
        n.depthLevels = depth
        for m in messages { m.withUnsafeBytes { n.handle(ITCHMessage(base: $0.baseAddress!, length: $0.count)) } }
        return (n, sink)
    }

    /// The first book (by locate) whose levels differ, if any.
    static func firstDifference(_ a: OrderBookSet, _ b: OrderBookSet) -> String? {
        for i in 0..<OrderBookSet.capacity where a.books[i].bids != b.books[i].bids || a.books[i].asks != b.books[i].asks {
            return "locate \(i): bids \(a.books[i].bids) vs \(b.books[i].bids), asks \(a.books[i].asks) vs \(b.books[i].asks)"
        }
        return nil
    }

    /// The snapshot of the first `k` messages in BinaryFILE framing, and the sequence it names.
    static func snapshot(after k: Int) -> (bytes: [UInt8], next: UInt64, count: Int) {
        var state = ITCHSnapshotState()
        for m in messages.prefix(k) { m.withUnsafeBytes { state.apply(ITCHMessage(base: $0.baseAddress!, length: $0.count)) } }
        var bytes: [UInt8] = [], next: UInt64 = 0, count = 0
        state.forEachMessage(nextSequence: UInt64(k + 1)) { m in
            if let n = GlimpseSnapshot.parseEndOfSnapshot(m[...]) { next = n; return }
            bytes.append(UInt8(m.count >> 8)); bytes.append(UInt8(m.count & 0xff)); bytes += m
            count += 1
        }
        return (bytes, next, count)
    }

    @Test(arguments: [0, 1, 137, 500, 999, 1000])
    func aSnapshotThenTheRestGivesTheBooksOfTheWholeFile(_ k: Int) throws {
        let (oracle, _) = Self.oracle()
        let s = Self.snapshot(after: k)
        #expect(s.next == UInt64(k + 1))
        let sink = CollectingSink()
        let n = ITCHNormalizer(sink: sink, clock: EasternClock(date: Self.date))
        s.bytes.withUnsafeBytes { _ = n.rebuild(from: $0, knownTime: Nanos(1)) }
        // Every message of the snapshot is well-formed ITCH 5.0 (the client checks each one the same way).
        try s.bytes.withUnsafeBytes { b in
            var r = BinaryFILEReader(b)
            var seen = 0
            while try r.next() != nil { seen += 1 }
            #expect(seen == s.count)
        }
        for m in Self.messages.dropFirst(k) { m.withUnsafeBytes { n.handle(ITCHMessage(base: $0.baseAddress!, length: $0.count)) } }
        #expect(Self.firstDifference(n.books, oracle.books) == nil)
        #expect(n.books.orders.count == oracle.books.orders.count)
        for i in 0..<OrderBookSet.capacity where oracle.books.books[i].top != TopOfBook() {
            #expect(n.symbol(locate: UInt16(i)) == oracle.symbol(locate: UInt16(i)))
        }
    }

    @Test func aSnapshotRestsOrdersInTimePriorityWithWhatRemains() {
        // Two orders at one price; the first partly executed, then replaced (losing its place).
        func add(_ ref: UInt64, _ shares: UInt32, _ ts: UInt64) -> [UInt8] {
            ITCHSnapshotState.addOrder(reference: ref, .init(locate: 7, side: UInt8(ascii: "B"), shares: shares, price: 1_000_000, rank: 0, timestamp: ts),
                                       stock: ITCHStock("ZZZ").raw)
        }
        var exec = [UInt8(ascii: "E"), 0, 7, 0, 0, 0, 0, 0, 0, 0, 3]
        exec += [0, 0, 0, 0, 0, 0, 0, 1] + [0, 0, 0, 40] + [UInt8](repeating: 0, count: 8)
        var replace = [UInt8(ascii: "U"), 0, 7, 0, 0, 0, 0, 0, 0, 0, 4]
        replace += [0, 0, 0, 0, 0, 0, 0, 2] + [0, 0, 0, 0, 0, 0, 0, 9] + [0, 0, 0, 50] + [0, 0x0F, 0x42, 0x40]
        var state = ITCHSnapshotState()
        for m in [add(1, 100, 1), add(2, 70, 2), exec, replace] { m.withUnsafeBytes { state.apply(ITCHMessage(base: $0.baseAddress!, length: $0.count)) } }
        var adds: [(UInt64, UInt32)] = []
        state.forEachMessage(nextSequence: 5) { m in
            m.withUnsafeBytes { b in
                let msg = ITCHMessage(base: b.baseAddress!, length: b.count)
                if msg.typeByte == UInt8(ascii: "A") { adds.append((msg.orderReference, msg.shares)) }
            }
        }
        #expect(adds.map(\.0) == [1, 9])
        #expect(adds.map(\.1) == [60, 50])
    }

    @Test func theEndOfSnapshotCarriesTheSequenceAsTwentyDigits() {
        let g = GlimpseSnapshot.endOfSnapshot(nextSequence: 1_234)
        #expect(g.count == 21 && g[0] == UInt8(ascii: "G"))
        #expect(String(decoding: g[1...], as: UTF8.self) == "                1234")
        #expect(GlimpseSnapshot.parseEndOfSnapshot(g[...]) == 1_234)
        #expect(GlimpseSnapshot.parseEndOfSnapshot(Array(g.dropLast())[...]) == nil)
        #expect(GlimpseSnapshot.parseEndOfSnapshot(([UInt8(ascii: "G")] + Array("12x4".utf8) + [UInt8](repeating: 0x20, count: 16))[...]) == nil)
    }
}

// MARK: - Over sockets: the player serves, the source takes

extension SnapshotTests {
    /// What a session gave a receiver.
    struct Run {
        var sink: CollectingSink
        var source: MoldUDP64Source
        var player: MoldUDP64Player.Counts
        var served: GlimpseServer.Counts?
        func count(_ name: String) -> UInt64 { source.counters().first { $0.name == name }?.value ?? 0 }
        var statuses: [(subject: String, status: Status)] {
            sink.events.filter { $0.kind == .status }.map { (sink.subjects.text($0.subjectID), $0.status) }.filter { $0.1.category == .book }
        }
    }

    /// A UDP port on loopback free now (bound and released), for a receiver that binds only later.
    func freePort() throws -> UDPEndpoint {
        let probe = try UDPSocket(receivingOn: loopback0)
        return probe.localEndpoint!
    }

    /// Plays the fixture with a snapshot server; the receiver is created (binding its line) only after
    /// `startAfterMillis`, so it joins mid-session.
    func play(rate: Int, dropA: Double = 0, retransmit: Bool = true, startAfterMillis: Int = 0, gapTimeoutNanos: Int64 = 300_000_000,
              depth: Int = 0, line: UDPEndpoint? = nil) throws -> Run {
        let lineA = try line ?? freePort()
        var po = MoldUDP64Player.Options(rate: rate, dropAPercent: dropA, retransmit: retransmit ? loopback0 : nil, seed: 11,
                                         lingerNanos: 4_000_000_000)
        po.snapshot = loopback0
        let player = try MoldUDP64Player(path: Fixture.itchSlice, to: [lineA], options: po)
        var fo = FeedOptions(date: Self.date, retransmitEndpoint: player.retransmitEndpoint, gapTimeoutNanos: gapTimeoutNanos,
                             idleTimeoutNanos: 3_000_000_000)
        fo.snapshotEndpoint = player.snapshotEndpoint
        fo.depthLevels = depth
        let stop = StopSignal()
        let done = DispatchSemaphore(value: 0)
        final class Box: @unchecked Sendable { var counts = MoldUDP64Player.Counts() }   // written before done.signal()
        let box = Box()
        Thread.detachNewThread { box.counts = player.run(stop: stop); done.signal() }
        defer { stop.raise(); done.wait(); done.signal() }
        if startAfterMillis > 0 { usleep(UInt32(startAfterMillis * 1000)) }
        let source = try MoldUDP64Source(lineA: lineA, options: fo)
        let sink = CollectingSink()
        try source.run(into: sink, stop: StopSignal())
        stop.raise(); done.wait(); done.signal()
        return Run(sink: sink, source: source, player: box.counts, served: player.snapshotCounts)
    }

    /// The last QUOTE per subject (an empty top when none was published), and the top-N depth per subject
    /// rebuilt from BOOK events, as a subscriber would keep them.
    static func view(_ sink: CollectingSink) -> (quotes: [String: [Int64]], depth: [String: [Int64]]) {
        var quotes: [String: [Int64]] = [:], depth: [String: [Int64]] = [:]
        for e in sink.events {
            let subject = sink.subjects.text(e.subjectID)
            let symbol = subject.split(separator: ".")[2]
            if e.kind == .quote { quotes[String(symbol)] = [e.a, e.b, e.c, e.d] }
            if e.kind == .book {
                var levels = depth[String(symbol)] ?? [Int64](repeating: 0, count: 2 * 2 * 8)
                let at = (Int(e.flags) - 1) * 16 + Int(e.c) * 2
                if at + 1 < levels.count { levels[at] = e.a; levels[at + 1] = e.b }
                depth[String(symbol)] = levels
            }
        }
        quotes = quotes.filter { $0.value != [0, 0, 0, 0] }
        depth = depth.filter { $0.value.contains { $0 != 0 } }
        return (quotes, depth)
    }

    @Test(.timeLimit(.minutes(5))) func aHandlerStartingMidSessionGetsTheRestingOrdersAndEndsWithTheBooksOfOneThatSawEverything() throws {
        // 1,000 messages at 1,000 a second: the receiver binds its line and logs in about 0.4 s in.
        let r = try play(rate: 1_000, startAfterMillis: 400, depth: 8)
        let (_, oracleSink) = Self.oracle(depth: 8)
        let delivered = r.count("messages")
        #expect(r.count("snapshots") == 1)
        #expect(r.served?.snapshots == 1)
        #expect(delivered > 0 && delivered < 900, "started mid-session: \(delivered) of 1000 messages delivered live")
        #expect(r.count("snapshot_messages") > 100)      // resting orders (and stock directories) came in the snapshot
        #expect(r.count("gap_events") == 0)
        let mine = Self.view(r.sink), theirs = Self.view(oracleSink)
        #expect(mine.quotes == theirs.quotes)
        #expect(mine.depth == theirs.depth)
        #expect(!theirs.quotes.isEmpty)
    }

    @Test(.timeLimit(.minutes(5))) func anUnrecoverableGapMakesTheBooksStaleUntilASnapshotRebuildsThem() throws {
        // One line, a fifth of its packets lost, no re-request server: every loss is unrecoverable.
        let r = try play(rate: 20_000, dropA: 20, retransmit: false, gapTimeoutNanos: 50_000_000)
        #expect(r.player.droppedA > 0)
        #expect(r.count("gap_events") > 0)
        #expect(r.count("snapshots") >= 2)              // the start, then at least one rebuild
        let statuses = r.statuses
        let stale = statuses.filter { $0.status.isStale }
        let cleared = statuses.filter { $0.status == .rebuilt }
        #expect(!stale.isEmpty)
        #expect(stale.allSatisfy { $0.status.reason == "GAP" })
        // Each symbol made stale is cleared afterwards, and none is stale at the end.
        var open: Set<String> = []
        for s in statuses { if s.status.isStale { open.insert(s.subject) } else { open.remove(s.subject) } }
        #expect(open.isEmpty, "still stale: \(open.sorted().prefix(5))")
        #expect(cleared.count >= Set(stale.map(\.subject)).count)
        // No QUOTE is published for a book while it is stale.
        var staleNow: Set<String> = []
        var quotesWhileStale = 0
        for e in r.sink.events {
            let symbol = r.sink.subjects.text(e.subjectID).split(separator: ".")[2]
            if e.kind == .status, e.status.category == .book { if e.status.isStale { staleNow.insert(String(symbol)) } else { staleNow.remove(String(symbol)) } }
            if e.kind == .quote, staleNow.contains(String(symbol)) { quotesWhileStale += 1 }
        }
        #expect(quotesWhileStale == 0)
        // Rebuilt, the books are those of a handler that lost nothing.
        let (_, oracleSink) = Self.oracle()
        #expect(Self.view(r.sink).quotes == Self.view(oracleSink).quotes)
    }

    @Test(.timeLimit(.minutes(5))) func withoutASnapshotServerAGapLeavesNoStaleStatus() throws {
        // The behaviour without `snapshot=` is as before: a GAP, no STATUS of category book.
        let lineA = try freePort()
        let player = try MoldUDP64Player(path: Fixture.itchSlice, to: [lineA], options: .init(rate: 50_000, dropAPercent: 20, seed: 11, lingerNanos: 1_000_000_000))
        let source = try MoldUDP64Source(lineA: lineA, options: FeedOptions(date: Self.date, gapTimeoutNanos: 50_000_000, idleTimeoutNanos: 2_000_000_000))
        let stop = StopSignal()
        let done = DispatchSemaphore(value: 0)
        Thread.detachNewThread { _ = player.run(stop: stop); done.signal() }
        let sink = CollectingSink()
        try source.run(into: sink, stop: StopSignal())
        stop.raise(); done.wait()
        #expect(sink.events.contains { $0.kind == .gap })
        #expect(!sink.events.contains { $0.kind == .status && $0.status.category == .book })
    }
}

// MARK: - An absurd sequence

extension SnapshotTests {
    /// A well-formed packet with sequence 2^60 used to open one gap of 2^60 messages (2^52 re-request
    /// ranges). Beyond the window it is dropped and counted; the session goes on, exactly.
    @Test(.timeLimit(.minutes(5)), arguments: [false, true])
    func aWellFormedPacketWithSequence2To60IsCountedNotAGap(_ withSnapshots: Bool) throws {
        let lineA = try freePort()
        var po = MoldUDP64Player.Options(rate: 2_000, retransmit: loopback0, seed: 3, lingerNanos: 2_000_000_000)
        if withSnapshots { po.snapshot = loopback0 }
        let player = try MoldUDP64Player(path: Fixture.itchSlice, to: [lineA], options: po)
        var fo = FeedOptions(date: Self.date, retransmitEndpoint: player.retransmitEndpoint, idleTimeoutNanos: 2_000_000_000)
        fo.snapshotEndpoint = player.snapshotEndpoint
        let source = try MoldUDP64Source(lineA: lineA, options: fo)
        let stop = StopSignal()
        let done = DispatchSemaphore(value: 0)
        Thread.detachNewThread { _ = player.run(stop: stop); done.signal() }
        // Mid-session (0.15 s of 0.5 s), one packet of the session with one real message, numbered 2^60.
        let injector = try UDPSocket()
        var packet: [UInt8] = []
        MoldUDP64.writeHeader(session: MoldUDP64.session("TICKWIRE"), sequence: 1 << 60, count: 1, into: &packet)
        let m = Self.messages[0]
        packet += [UInt8(m.count >> 8), UInt8(m.count & 0xff)] + m
        let jump = packet
        Thread.detachNewThread { usleep(150_000); injector.send(jump, to: lineA) }
        let sink = CollectingSink()
        try source.run(into: sink, stop: StopSignal())
        stop.raise(); done.wait()
        let count = { (name: String) in source.counters().first { $0.name == name }?.value ?? 0 }
        #expect(count("sequence_jumps") == 1)
        #expect(count("gaps_open") == 0)
        #expect(count("messages_lost") == 0)
        let (_, oracleSink) = Self.oracle()
        #expect(Self.view(sink).quotes == Self.view(oracleSink).quotes)
        if withSnapshots {
            // The jump made the books stale; a snapshot said where the session is and cleared them.
            let book = sink.events.filter { $0.kind == .status && $0.status.category == .book }.map(\.status)
            #expect(book.contains { $0.isStale && $0.reason == "SEQJUMP" })
            #expect(book.last == .rebuilt)
        } else {
            #expect(count("messages") == 1000)
        }
    }
}

// MARK: - Configuration: the moldudp64: spec's keys

@Suite struct MoldUDP64SettingsTests {
    @Test func theSpecCarriesTheSnapshotServerAndTheRecoveryLimits() throws {
        let spec = try SourceSpec(parsing: "moldudp64:239.1.1.1:30001,239.1.1.2:30001?snapshot=tcp://10.0.0.5:40000&user=desk&password=pw"
                                  + "&gap_timeout_ms=100&request_delay_ms=5&max_request=64&max_outstanding=8&max_jump=5000&snapshot_timeout_ms=2000")
        guard case .moldUDP64(let a, let b, let s) = spec else { Issue.record("not moldudp64"); return }
        let (wantA, wantB) = (try UDPEndpoint(parsing: "239.1.1.1:30001"), try UDPEndpoint(parsing: "239.1.1.2:30001"))
        #expect(a == wantA && b == wantB)
        var o = FeedOptions(date: try TradingDate(parsing: "2019-12-30"))
        s.apply(to: &o)
        let server = try UDPEndpoint(parsing: "10.0.0.5:40000")
        #expect(o.snapshotEndpoint == server)
        #expect(o.snapshotUsername == "desk" && o.snapshotPassword == "pw")
        #expect(o.gapTimeoutNanos == 100_000_000 && o.requestDelayNanos == 5_000_000 && o.snapshotTimeoutNanos == 2_000_000_000)
        #expect(o.maxMessagesPerRequest == 64 && o.maxOutstandingRequests == 8 && o.maxSequenceJump == 5000)
        let limits = MoldUDP64GapTracker.Limits(o)
        #expect(limits.maxMessagesPerRequest == 64 && limits.maxOutstanding == 8 && limits.gapTimeoutNanos == 100_000_000)
        // The password is not printed back.
        #expect(!spec.description.contains("pw") && spec.description.contains("snapshot=10.0.0.5:40000"))
        // Without keys, the spec is as before.
        #expect(try SourceSpec(parsing: "moldudp64:127.0.0.1:5000") == .moldUDP64(lineA: try UDPEndpoint(parsing: "127.0.0.1:5000"), lineB: nil))
    }

    @Test(arguments: [
        ("moldudp64:1.2.3.4:5?snapshot=1.2.3.4", "has no port"), ("moldudp64:1.2.3.4:5?max_request=0", "max_request=0: expected an integer from 1 to 65534"),
        ("moldudp64:1.2.3.4:5?max_request=65535", "from 1 to 65534"), ("moldudp64:1.2.3.4:5?max_jump=-1", "max_jump=-1"),
        ("moldudp64:1.2.3.4:5?colour=blue", "unknown key 'colour'"), ("moldudp64:1.2.3.4:5?snapshot", "is not KEY=VALUE"),
    ])
    func badKeysSayWhich(_ text: String, _ why: String) {
        do {
            _ = try SourceSpec(parsing: text)
            Issue.record("'\(text)' parsed")
        } catch {
            #expect(error.description.contains(why), "\(error)")
        }
    }
}

// MARK: - A scripted exchange: exact sequences, no timing

extension SnapshotTests {
    /// The state after the first `k` messages of the fixture.
    static func state(after k: Int) -> ITCHSnapshotState {
        var state = ITCHSnapshotState()
        for m in messages.prefix(k) { m.withUnsafeBytes { state.apply(ITCHMessage(base: $0.baseAddress!, length: $0.count)) } }
        return state
    }

    /// A snapshot server whose n-th login gets the n-th of `states` (the last one after that).
    final class ScriptedServer: @unchecked Sendable {   // `server` is its thread's until `stop()` returns
        let server: GlimpseServer
        let stopSignal = StopSignal()
        let done = DispatchSemaphore(value: 0)
        init(_ states: [(ITCHSnapshotState, UInt64)]) throws {
            server = try GlimpseServer(on: try UDPEndpoint(parsing: "127.0.0.1:0"), session: "TICKWIRE")
            Thread.detachNewThread { [self] in
                while !stopSignal.isRaised {
                    let (state, next) = states[min(server.counts.logins, states.count - 1)]
                    server.serve(state: state, nextSequence: next)
                    usleep(200)
                }
                done.signal()
            }
        }
        func stop() -> GlimpseServer.Counts { stopSignal.raise(); done.wait(); return server.counts }
    }

    /// Every line datagram is sent before the handler runs, so when it takes its second snapshot (after losing
    /// 601…700) its lines have already shown everything up to the end of session: the snapshot's sequence (751)
    /// lies behind what it has seen. That used to trap (an unsigned subtraction); now the snapshot waits for the
    /// stream to reach 751 and the books end as the whole file's.
    @Test(.timeLimit(.minutes(5))) func aSnapshotBehindWhatTheLinesShowedIsInstalledWhenTheStreamReachesIt() throws {
        let server = try ScriptedServer([(Self.state(after: 500), 501), (Self.state(after: 750), 751)])
        var fo = FeedOptions(date: Self.date, gapTimeoutNanos: 50_000_000, idleTimeoutNanos: 2_000_000_000)
        fo.snapshotEndpoint = server.server.endpoint
        let source = try MoldUDP64Source(lineA: loopback0, options: fo)
        let line = source.boundLines[0]
        let sender = try UDPSocket()
        let session = MoldUDP64.session("TICKWIRE")
        for seq in 400...1000 where !(601...700).contains(seq) {
            let m = Self.messages[seq - 1]
            var packet: [UInt8] = []
            MoldUDP64.writeHeader(session: session, sequence: UInt64(seq), count: 1, into: &packet)
            packet += [UInt8(m.count >> 8), UInt8(m.count & 0xff)] + m
            sender.send(packet, to: line)
        }
        var end: [UInt8] = []
        MoldUDP64.writeHeader(session: session, sequence: 1001, count: MoldUDP64.endOfSession, into: &end)
        sender.send(end, to: line)
        let sink = CollectingSink()
        try source.run(into: sink, stop: StopSignal())
        let served = server.stop()
        let count = { (name: String) in source.counters().first { $0.name == name }?.value ?? 0 }
        #expect(served.snapshots == 2)
        #expect(count("snapshots") == 2)
        #expect(count("gap_events") == 1 && count("messages_lost") == 100)
        let gap = sink.events.first { $0.kind == .gap }?.gapBody
        #expect(gap?.first == 601 && gap?.last == 700)
        let (_, oracleSink) = Self.oracle()
        #expect(Self.view(sink).quotes == Self.view(oracleSink).quotes)
        let book = sink.events.filter { $0.kind == .status && $0.status.category == .book }.map(\.status)
        #expect(book.contains { $0.isStale } && book.last == .rebuilt)
    }
}
