import Testing
import TickwireCore
@testable import TickwireStore

@Suite struct BitemporalTests {
    let ev = Events()

    @Test func readsBackEverythingInReplayOrderBeforeAndAfterSealing() throws {
        let dir = scratchDirectory(); defer { cleanUp(dir) }
        var events = [Event]()
        for i in 0..<5000 {
            let s = ["MD.XNAS.AAPL", "MD.XNAS.MSFT", "MD.ARCX.AAPL"][i % 3]
            events.append(i % 2 == 0 ? ev.quote(s + ".QUOTE", at: t(Double(i) * 0.01), known: t(Double(i) * 0.01 + 0.001), bid: 100 + Int64(i % 7), ask: 101 + Int64(i % 7))
                                     : ev.trade(s + ".TRADE", at: t(Double(i) * 0.01), known: t(Double(i) * 0.01 + 0.002), price: 100, id: UInt64(i)))
        }
        events.append(.status(ev.table.intern(text: "ALERT.PRICE_JUMP.AAPL"), Status(category: .trading, state: UInt8(ascii: "H"), reason: "LUDP"), eventTime: t(1), knownTime: t(1)))
        try ev.write(events, to: dir, seal: false)
        let open = try read(dir)
        #expect(open.count == events.count)
        // Replay order: event time, then subject, then known time.
        for (x, y) in zip(open, open.dropFirst()) {
            #expect((x.event.eventTime, x.subject, x.event.knownTime) <= (y.event.eventTime, y.subject, y.event.knownTime))
        }
        let w = try StoreWriter(directory: dir, subjects: ev.table)
        #expect(try w.seal().map(\.relativePath) == ["2026-01-05/ALERT", "2026-01-05/MD.ARCX", "2026-01-05/MD.XNAS"])
        let sealed = try read(dir)
        #expect(sealed == open)
        #expect(sealed.first { $0.event.kind == .status }?.event.status.reason == "LUDP")
        let sorted = events.map { StoredEvent(subject: ev.table.text($0.subjectID), event: Event(subjectID: 0, kind: $0.kind, flags: $0.flags, source: $0.source, eventTime: $0.eventTime, knownTime: $0.knownTime, a: $0.a, b: $0.b, c: $0.c, d: $0.d)) }
            .sorted { ($0.event.eventTime, $0.subject, $0.event.knownTime) < ($1.event.eventTime, $1.subject, $1.event.knownTime) }
        #expect(sealed == sorted)
    }

    @Test func aCorrectionReplacesItsTradeOnlyFromItsKnownTimeOn() throws {
        let dir = scratchDirectory(); defer { cleanUp(dir) }
        try ev.write([
            ev.trade("MD.XNAS.AAPL.TRADE", at: t(10), known: t(10.001), price: 100, id: 7),
            ev.trade("MD.XNAS.AAPL.TRADE", at: t(11), known: t(11.001), price: 102, id: 8),
            ev.trade("MD.XNAS.AAPL.TRADE", at: t(10), known: t(20), price: 101, id: 7),  // correction of 7
        ], to: dir)
        #expect(try read(dir, asOf: t(5)).isEmpty)
        #expect(try read(dir, asOf: t(10.5)).map(\.event.a) == [100_000_000])
        #expect(try read(dir, asOf: t(15)).map(\.event.a) == [100_000_000, 102_000_000])
        #expect(try read(dir, asOf: t(20)).map(\.event.a) == [101_000_000, 102_000_000])
        #expect(try read(dir).map(\.event.a) == [101_000_000, 102_000_000])
    }

    @Test func lateDataIsPlacedByEventTimeAndSeenOnlyAfterItArrived() throws {
        let dir = scratchDirectory(); defer { cleanUp(dir) }
        try ev.write([
            ev.quote("MD.XNAS.AAPL.QUOTE", at: t(6), known: t(6), bid: 100, ask: 101),
            ev.quote("MD.XNAS.AAPL.QUOTE", at: t(7), known: t(7), bid: 101, ask: 102),
        ], to: dir)
        let before = try read(dir, asOf: t(50))
        // The late quote arrives after the partition was sealed: a new log, merged on the next seal.
        try ev.write([ev.quote("MD.XNAS.AAPL.QUOTE", at: t(5), known: t(100), bid: 99, ask: 100)], to: dir, seal: false)
        #expect(try read(dir, asOf: t(50)) == before)
        #expect(try read(dir, asOf: t(150)).map(\.event.a) == [99_000_000, 100_000_000, 101_000_000])
        try ev.write([], to: dir)   // seal
        #expect(try read(dir, asOf: t(50)) == before)
        #expect(try read(dir).map(\.event.a) == [99_000_000, 100_000_000, 101_000_000])
        #expect(Layout.inspect(dir + "/2026-01-05/MD.XNAS").logGenerations.isEmpty)
    }

    @Test func aBustRemovesItsTradeOnlyAsKnownAfterIt() throws {
        let dir = scratchDirectory(); defer { cleanUp(dir) }
        try ev.write([
            ev.trade("MD.XNAS.AAPL.TRADE", at: t(10), known: t(10), price: 100, id: 9),
            ev.trade("MD.XNAS.MSFT.TRADE", at: t(10), known: t(10), price: 300, id: 9),    // same id, other symbol
            ev.trade("MD.XNAS.AAPL.TRADE", at: t(10), known: t(12), price: 100, id: 9),    // a re-send (correction)
            ev.bust("MD.XNAS.AAPL.BUST", at: t(30), known: t(30), id: 9),
        ], to: dir)
        #expect(digest(try read(dir, asOf: t(20))) == [
            "MD.XNAS.AAPL.TRADE TRADE e=10000000000 k=12000000000 a=100000000",
            "MD.XNAS.MSFT.TRADE TRADE e=10000000000 k=10000000000 a=300000000",
        ])
        #expect(digest(try read(dir, asOf: t(40))) == [
            "MD.XNAS.MSFT.TRADE TRADE e=10000000000 k=10000000000 a=300000000",
            "MD.XNAS.AAPL.BUST BUST e=30000000000 k=30000000000 a=0",
        ])
        #expect(try read(dir, "MD.XNAS.AAPL.TRADE").isEmpty)
        #expect(try read(dir, "MD.XNAS.AAPL.TRADE", asOf: t(29)).count == 1)
    }

    @Test func theWindowIsHalfOpenOnEventTime() throws {
        let dir = scratchDirectory(); defer { cleanUp(dir) }
        try ev.write((0..<3000).map { ev.quote("MD.XNAS.AAPL.QUOTE", at: t(Double($0)), known: t(Double($0)), bid: Int64($0), ask: Int64($0) + 1) }, to: dir)
        let got = try read(dir, from: t(1000), to: t(2500))
        #expect(got.count == 1500)
        #expect(got.first?.event.eventTime == t(1000))
        #expect(got.last?.event.eventTime == t(2499))
        #expect(try read(dir, from: t(10), to: t(10)).isEmpty)
        #expect(try read(dir, "MD.ARCX.>").isEmpty)
    }

    @Test func eventsAreSplitByTradingDateAndVenue() throws {
        let dir = scratchDirectory(); defer { cleanUp(dir) }
        let day: Double = 86_400
        try ev.write([
            ev.quote("MD.XNAS.AAPL.QUOTE", at: t(0), known: t(0), bid: 1, ask: 2),
            ev.quote("MD.XNAS.AAPL.QUOTE", at: t(day), known: t(day), bid: 3, ask: 4),
            ev.quote("MD.ARCX.AAPL.QUOTE", at: t(day), known: t(day), bid: 5, ask: 6),
        ], to: dir)
        #expect(try StoreReader(directory: dir).partitions.map(\.relativePath) == ["2026-01-05/MD.XNAS", "2026-01-06/MD.ARCX", "2026-01-06/MD.XNAS"])
        #expect(try read(dir, "MD.*.AAPL.QUOTE", from: t(0), to: t(2 * day)).map(\.event.a) == [1, 5, 3].map { $0 * 1_000_000 })
    }

    @Test(arguments: [
        (">", "2026-01-05", "2026-01-04", nil as String?, "--from/--to"),
        ("MD..X", "2026-01-05", "2026-01-06", nil, "--subjects"),
        ("MD.>.X", "2026-01-05", "2026-01-06", nil, "--subjects"),
        (">", "yesterday", "2026-01-06", nil, "--from"),
        (">", "2026-01-05", "2026-13-06", nil, "--to"),
        (">", "2026-01-05", "2026-01-06", "12:00", "--as-of"),
    ])
    func malformedQueriesNameTheirArgument(subjects: String, from: String, to: String, asOf: String?, field: String) {
        #expect {
            try StoreQuery(subjects: subjects, from: from, to: to, asOf: asOf)
        } throws: { error in
            guard case StoreError.badQuery(let f, let reason) = error else { return false }
            return f == field && !reason.isEmpty
        }
    }

    @Test func durationsParse() throws {
        #expect(try StoreQuery.duration("250ms") == 250_000_000)
        #expect(try StoreQuery.duration("2s") == 2_000_000_000)
        #expect(try StoreQuery.duration("1500") == 1500)
        #expect(try StoreQuery.duration("1.5s") == 1_500_000_000)
        #expect(try StoreQuery.duration("0.25ms") == 250_000)
        #expect(try StoreQuery.duration(".5m") == 30_000_000_000)
        for bad in ["soon", "1.5ns", "0.0000000001s", "-1s", "1.s", "1..5s"] {
            #expect(throws: StoreError.self, "\(bad)") { try StoreQuery.duration(bad) }
        }
    }
}

@Test func aProjectedScanReturnsTheSameRowsAndColumns() throws {
    let ev = Events()
    let dir = scratchDirectory(); defer { cleanUp(dir) }
    var events: [Event] = (0..<3000).map { (i: Int) -> Event in
        ev.quote("MD.XNAS.AAPL.QUOTE", at: t(Double(i)), known: t(Double(i) + 0.5), bid: Int64(i % 17), ask: Int64(i % 17) + 1)
    }
    events.append(ev.trade("MD.XNAS.AAPL.TRADE", at: t(5), known: t(5), price: 1, id: 1))
    events.append(ev.trade("MD.XNAS.AAPL.TRADE", at: t(5), known: t(9), price: 2, id: 1))
    try ev.write(events, to: dir)
    let q = try StoreQuery(subjects: SubjectPattern(">"), from: t(100), to: t(2900), asOf: t(2000))
    func collect(_ columns: StoreColumns, _ pick: (BlockBuffer, Int) -> Int64) throws -> [Int64] {
        var out = [Int64]()
        try StoreReader(directory: dir).scan(q, columns: columns) { b in for i in 0..<b.count { out.append(pick(b.rows, i)) } }
        return out
    }
    let all = try collect(.all) { $0.c[$1] }
    #expect(all.count == 1900)
    #expect(try collect([.c]) { $0.c[$1] } == all)
    #expect(try collect([.knownTime]) { $0.knownTime[$1] } == collect(.all) { $0.knownTime[$1] })
}
