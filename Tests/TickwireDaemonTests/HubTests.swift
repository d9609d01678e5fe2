import Foundation
import TickwireTestSupport
import Synchronization
import Testing
import TickwireCore
import TickwireDaemon

/// The daemon's in-process fan-out: 2,000 trader subscriptions with their own mixes of literal and wildcard
/// patterns, each receiving exactly what a brute-force matcher says it should.
@Suite(.serialized) struct HubTests {
    func daemon(rate: Int, limit: Int?) -> Daemon {
        inProcessDaemon("hub") { c in
            c.simRate = rate
            c.simLimit = limit
            c.ringCapacity = 1 << 18
        }
    }

    final class Counter: Sendable {
        let value = Atomic<Int>(0)
        let subjects = Mutex<[String]>([])
    }

    @Test func twoThousandSubscriptionsEachGetExactlyTheirMatches() throws {
        let d = daemon(rate: 50_000, limit: 10_000)
        let symbols = ["AAPL", "MSFT", "AMZN", "GOOGL", "META", "NVDA", "TSLA", "JPM", "V", "JNJ", "WMT", "PG"]
        let venues = ["XNAS", "XNYS", "*"], kinds = ["TRADE", "QUOTE", "STATUS", "*"]
        var rng = SystemRandomNumberGenerator()
        var batch: [(name: String, patterns: [SubjectPattern], handler: @Sendable (Event) -> Void)] = []
        var counters: [Counter] = []
        let everything = Counter()
        let all = d.hub.subscribe(name: "all", patterns: [try SubjectPattern(">")]) { [subjects = d.subjects] e in
            everything.subjects.withLock { $0.append(subjects.text(e.subjectID)) }
        }
        for i in 0..<2_000 {
            var patterns: [SubjectPattern] = []
            for _ in 0..<(1 + Int.random(in: 0..<3, using: &rng)) {
                let text: String
                switch Int.random(in: 0..<4, using: &rng) {
                case 0: text = "MD.\(venues.randomElement(using: &rng)!).\(symbols.randomElement(using: &rng)!).\(kinds.randomElement(using: &rng)!)"
                case 1: text = "MD.*.\(symbols.randomElement(using: &rng)!).>"
                case 2: text = "MD.\(["XNAS", "XNYS"].randomElement(using: &rng)!).>"
                default: text = "MD.XNAS.\(symbols.randomElement(using: &rng)!).QUOTE"
                }
                patterns.append(try SubjectPattern(text))
            }
            let counter = Counter()
            counters.append(counter)
            batch.append(("trader\(i)", patterns, { _ in counter.value.add(1, ordering: .relaxed) }))
        }
        let subs = Array(zip(d.hub.subscribe(batch), counters))
        try d.start()
        defer { d.shutdown() }
        let deadline = Date().addingTimeInterval(30)
        while all.delivered < 10_000 && Date() < deadline { usleep(20_000) }   // the limit counts the opening STATUS events too
        usleep(100_000)
        let seen = everything.subjects.withLock { $0 }
        #expect(seen.count == 10_000)
        var histogram: [String: Int] = [:]
        for s in seen { histogram[s, default: 0] += 1 }
        for (sub, counter) in subs {
            let expected = histogram.reduce(0) { acc, kv in
                sub.patterns.contains { $0.matches(subjectText: kv.key) } ? acc + kv.value : acc
            }
            #expect(counter.value.load(ordering: .relaxed) == expected, "\(sub.name) \(sub.patterns)")
            #expect(sub.delivered == UInt64(expected))
        }
        #expect(d.statistics().consumers.contains { $0.name == "in-process:trader1999" })
    }

    /// The hub reads the ring only while someone listens: no consumer before the first subscription or after the
    /// last one is gone, and a subscription made before the feed starts sees its first event.
    @Test func theHubReadsTheRingOnlyWhileThereAreSubscriptions() throws {
        let d = daemon(rate: 20_000, limit: nil)
        func hubAttached() -> Bool { d.statistics().consumers.contains { $0.name == "in-process-hub" } }
        try d.start()
        defer { d.shutdown() }
        usleep(50_000)
        #expect(!hubAttached())
        for round in 0..<3 {
            let counter = Counter()
            let sub = d.hub.subscribe(name: "r\(round)", patterns: [try SubjectPattern("MD.>")]) { _ in counter.value.add(1, ordering: .relaxed) }
            #expect(hubAttached(), "attached by subscribe itself, before the hub thread runs")
            let deadline = Date().addingTimeInterval(10)
            while counter.value.load(ordering: .relaxed) < 100 && Date() < deadline { usleep(5_000) }
            #expect(counter.value.load(ordering: .relaxed) >= 100)
            d.hub.unsubscribe(sub)
            while hubAttached() && Date() < deadline { usleep(5_000) }
            #expect(!hubAttached())
        }
    }

    @Test func subscribeAndUnsubscribeWhileTheFeedRuns() throws {
        let d = daemon(rate: 0, limit: nil)
        try d.start()
        defer { d.shutdown() }
        let pattern = try SubjectPattern("MD.*.AAPL.>")
        for round in 0..<20 {
            let counter = Counter()
            let sub = d.hub.subscribe(name: "churn\(round)", patterns: [pattern]) { [subjects = d.subjects] e in
                if !pattern.matches(subjectText: subjects.text(e.subjectID)) && e.kind != .gap { counter.subjects.withLock { $0.append("bad") } }
                counter.value.add(1, ordering: .relaxed)
            }
            usleep(20_000)
            d.hub.unsubscribe(sub)
            let after = counter.value.load(ordering: .relaxed)
            usleep(20_000)
            #expect(counter.value.load(ordering: .relaxed) <= after + 256, "at most the batch in flight after unsubscribe")
            #expect(counter.subjects.withLock { $0.isEmpty })
        }
        #expect(d.hub.subscriptions.isEmpty)
    }
}
