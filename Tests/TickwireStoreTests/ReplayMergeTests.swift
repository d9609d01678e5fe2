import Foundation
import Testing
import TickwireCore
@testable import TickwireStore

/// Replay order (event time, subject text, known time) out of `ReplayMerge`'s sorted windows, where the windows are
/// hard: equal event times across subjects and partitions, one subject's run of equal times over several blocks,
/// thin and thick subjects, and more rows than a window holds.
@Suite struct ReplayMergeTests {
    let ev = Events()

    /// A small deterministic generator (the test must fail the same way twice).
    struct LCG {
        var state: UInt64
        mutating func next(_ bound: Int) -> Int {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int((state >> 33) % UInt64(bound))
        }
    }

    @Test func sortedWindowsGiveReplayOrder() throws {
        let dir = scratchDirectory(); defer { cleanUp(dir) }
        var rng = LCG(state: 42)
        let subjects = (0..<200).map { "MD.\($0 % 2 == 0 ? "XNAS" : "BATS").S\(String(format: "%03d", $0)).QUOTE" }
        var events = [Event]()
        var known: Int64 = 0
        func add(_ subject: String, _ millis: Int) {
            known += 1       // every known time distinct: the expected order is a total order
            events.append(ev.quote(subject, at: t(Double(millis) / 1000), known: Nanos(t(3600).rawValue + known), bid: 100, ask: 101))
        }
        // 300,000 rows over 2 s in whole milliseconds: many equal times across subjects; S000 thin, S001 thick.
        // The first blocks end past 200,000 rows: windows are narrowed.
        for _ in 0..<300_000 {
            let s = rng.next(10) == 0 ? 1 : 2 + rng.next(subjects.count - 2)
            add(subjects[s], rng.next(2000))
        }
        for m in stride(from: 0, to: 2000, by: 400) { add(subjects[0], m) }
        for _ in 0..<3000 { add(subjects[5], 1000) }        // three blocks at one time, tied with every other subject
        try ev.write(events, to: dir)

        let expected = events.map { e in (e, ev.table.text(e.subjectID)) }
            .sorted { x, y in
                if x.0.eventTime != y.0.eventTime { return x.0.eventTime < y.0.eventTime }
                if x.1 != y.1 { return x.1 < y.1 }
                return x.0.knownTime < y.0.knownTime
            }
            .map { "\($0.1) \($0.0.eventTime.rawValue) \($0.0.knownTime.rawValue)" }

        let q = try StoreQuery(subjects: ">", from: "2026-01-05", to: "2026-01-06")
        let replayed = try StoreReader(directory: dir).events(q).map { "\($0.subject) \($0.event.eventTime.rawValue) \($0.event.knownTime.rawValue)" }
        #expect(replayed.count == expected.count)
        #expect(replayed == expected)

        // The Arrow path reads the same merge a batch at a time: the same rows in the same order.
        final class Collect: FrameSink {
            var rows = [String]()
            let names: [String]
            init(_ names: [String]) { self.names = names }
            func write(_ b: FrameBatch) throws {
                let s = b.column(0), e = b.column(2), k = b.column(3)
                for i in 0..<b.rows { rows.append("\(names[Int(s[i])]) \(e[i]) \(k[i])") }
            }
            func finish() throws {}
        }
        var sink: Collect?
        try Frames.replay(StoreReader(directory: dir), q) { fields in
            let c = Collect(fields[0].dictionary); sink = c; return c
        }
        #expect(sink?.rows == expected)
    }
}
