import Foundation
import Testing
import TickwireCore
@testable import TickwireFeeds

/// An event with its subject's text, and with the known time left out (a live feed stamps its receive clock).
struct Comparable: Equatable, CustomStringConvertible {
    let subject: String
    var event: Event
    init(_ e: Event, _ sink: CollectingSink) { subject = sink.subjects.text(e.subjectID); event = e; event.subjectID = 0; event.knownTime = .zero }
    var description: String { "\(subject) \(event)" }
}

@Suite(.serialized) struct MoldUDP64Tests {
    static let date = try! TradingDate(parsing: "2019-12-30")
    let loopback0 = try! UDPEndpoint(parsing: "127.0.0.1:0")

    func direct() throws -> [Comparable] {
        let sink = try collect(try ITCHFileSource(path: Fixture.itchSlice, options: FeedOptions(date: MoldUDP64Tests.date)))
        return sink.events.map { Comparable($0, sink) }
    }

    /// Plays the slice to a receiver on loopback; returns what the receiver published and both sides' counters.
    func play(twoLines: Bool, dropA: Double, retransmit: Bool, gapTimeoutNanos: Int64 = 500_000_000)
        throws -> (events: [Comparable], gaps: [Gap], source: MoldUDP64Source, player: MoldUDP64Player.Counts) {
        let playerOptions = MoldUDP64Player.Options(rate: 200_000, dropAPercent: dropA, retransmit: retransmit ? loopback0 : nil,
                                                    seed: 7, lingerNanos: 3_000_000_000)
        let feedOptions = FeedOptions(date: MoldUDP64Tests.date, gapTimeoutNanos: gapTimeoutNanos, idleTimeoutNanos: 5_000_000_000)
        // The player needs the lines and the receiver the retransmission endpoint: bind the receiver first on
        // ephemeral ports, then build the player, then tell the receiver where the player listens.
        let probe = try MoldUDP64Source(lineA: loopback0, lineB: twoLines ? loopback0 : nil, options: feedOptions)
        let player = try MoldUDP64Player(path: Fixture.itchSlice, to: probe.boundLines, options: playerOptions)
        let source = probe
        source.options.retransmitEndpoint = player.retransmitEndpoint
        let stop = StopSignal()
        let done = DispatchSemaphore(value: 0)
        final class Box: @unchecked Sendable { var counts = MoldUDP64Player.Counts() }   // written before done.signal()
        let box = Box()
        Thread.detachNewThread { box.counts = player.run(stop: stop); done.signal() }
        let sink = CollectingSink()
        defer { stop.raise(); done.wait() }
        try source.run(into: sink, stop: StopSignal())
        stop.raise(); done.wait(); done.signal()
        let gaps = sink.events.filter { $0.kind == .gap }.map(\.gapBody)
        return (sink.events.filter { $0.kind != .gap }.map { Comparable($0, sink) }, gaps, source, box.counts)
    }

    @Test func twoLinesWithAFifthOfLineADroppedGiveTheSameEventsAsTheFile() throws {
        let r = try play(twoLines: true, dropA: 20, retransmit: true)
        #expect(r.player.droppedA > 0)
        #expect(r.events == (try direct()))
        #expect(r.gaps.isEmpty)
        #expect(counter(r.source, "messages") == 1000)
        #expect(counter(r.source, "duplicates") > 0)          // line B repeats what A delivered
        #expect(counter(r.source, "gap_events") == 0)
    }

    @Test func oneLineRecoversDropsByReRequest() throws {
        let r = try play(twoLines: false, dropA: 20, retransmit: true)
        #expect(r.player.droppedA > 0)
        #expect(r.events == (try direct()))
        #expect(counter(r.source, "rerequests") > 0)
        #expect(r.player.retransmitted >= r.player.droppedMessagesA)
        #expect(counter(r.source, "gap_events") == 0)
    }

    @Test func unrecoverableGapsArePublishedWithExactRanges() throws {
        let r = try play(twoLines: false, dropA: 20, retransmit: false, gapTimeoutNanos: 50_000_000)
        #expect(r.player.droppedMessagesA > 0)
        let lost = r.gaps.reduce(UInt64(0)) { $0 + $1.count }
        #expect(lost == UInt64(r.player.droppedMessagesA))
        #expect(counter(r.source, "messages_lost") == lost)
        #expect(counter(r.source, "messages") == UInt64(1000 - r.player.droppedMessagesA))
        for g in r.gaps { #expect(g.scope == .source && g.first >= 1 && g.last <= 1000 && g.first <= g.last) }
    }
}

@Suite struct SourceSpecTests {
    @Test func specsParse() throws {
        #expect(try SourceSpec(parsing: "sim") == .sim)
        #expect(try SourceSpec(parsing: "itch:/data/12302019.NASDAQ_ITCH50") == .itch(path: "/data/12302019.NASDAQ_ITCH50"))
        #expect(try SourceSpec(parsing: "moldudp64:239.1.1.1:30001,udp://239.1.1.2:30001")
                == .moldUDP64(lineA: try UDPEndpoint(parsing: "239.1.1.1:30001"), lineB: try UDPEndpoint(parsing: "239.1.1.2:30001")))
        #expect(try SourceSpec(parsing: "tardis-trades:t.csv") == .tardisTrades(path: "t.csv"))
        #expect(try SourceSpec(parsing: "tardis-quotes:q.csv") == .tardisQuotes(path: "q.csv"))
        #expect(try SourceSpec(parsing: "lobster:AAPL_2012-06-21_message_10.csv") == .lobster(path: "AAPL_2012-06-21_message_10.csv"))
        #expect(try UDPEndpoint(parsing: "239.1.1.1:30001").isMulticast)
        #expect(try SourceSpec(parsing: "moldudp64:127.0.0.1:5000").description == "moldudp64:udp://127.0.0.1:5000")
    }

    @Test(arguments: [
        ("", "it is empty"), ("kafka:x", "unknown source kind 'kafka'"), ("itch:", "needs a file path"),
        ("sim:3", "takes no argument"), ("moldudp64:1.2.3.4", "has no port"), ("moldudp64:a.b:1", "is not an IPv4 address"),
        ("moldudp64:1.2.3.4:1,1.2.3.4:2,1.2.3.4:3", "one or two endpoints"), ("moldudp64:1.2.3.4:99999", "is not 0-65535"),
        ("moldudp64:1.2.3.4:5,1.2.3.4:5", "the same endpoint"),
    ])
    func badSpecsSayWhy(_ text: String, _ why: String) {
        do {
            _ = try SourceSpec(parsing: text)
            Issue.record("'\(text)' parsed")
        } catch {
            #expect(error.description.contains(why), "\(error)")
        }
    }

    @Test func factoryBuildsEachKind() throws {
        let options = FeedOptions(date: try TradingDate(parsing: "2019-12-30"))
        #expect(try SourceFactory.make(.sim, options: options) == nil)
        #expect(try SourceFactory.make(.itch(path: Fixture.itchSlice), options: options) is ITCHFileSource)
        #expect(try SourceFactory.make(.tardisTrades(path: Fixture.tardisTrades), options: options) is TardisCSVSource)
        #expect(try SourceFactory.make(.lobster(path: Fixture.lobsterMessages), options: FeedOptions()) is LOBSTERSource)
        #expect(try SourceFactory.make(.moldUDP64(lineA: try UDPEndpoint(parsing: "127.0.0.1:0"), lineB: nil), options: options) is MoldUDP64Source)
        #expect(throws: FeedConfigError.self) { try SourceFactory.make(.moldUDP64(lineA: try UDPEndpoint(parsing: "127.0.0.1:0"), lineB: nil), options: FeedOptions()) }
    }
}
