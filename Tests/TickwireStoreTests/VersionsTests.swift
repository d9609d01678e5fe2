import Testing
import TickwireCore
import TickwireTestSupport
@testable import TickwireStore

/// Versions are resolved per subject inside each half of a segment built on two threads, with the busts gathered
/// first: the valid-until exceptions must be those of the definition (docs/STORAGE.md, "Versions") whichever
/// half a subject, its busts and its corrections land in.
@Suite(.timeLimit(.minutes(2))) struct VersionsTests {
    /// Busts of `MD.XNAS.A` take more than half the rows, so the two halves cut between them and the trades they
    /// void. Trade ids come from a small pool (re-sent trades: corrections), one in seven is 0 (no id), event
    /// times sit on a coarse grid (runs of equal time, some longer than 32 rows) and arrive out of order (late
    /// trades); a few rows of every kind are ended by corrections, a few busts withdrawn. `MD.XNYS.A` shares
    /// the trade ids but not the stem: XNAS busts must not void its trades.
    func hostile(_ ev: Events, seed: UInt64) -> (events: [Event], ends: [Int: Int64]) {
        var rng = SplitMix(seed: seed)
        var events = [Event]()
        func at() -> Nanos { t(Double(rng.next(below: 40)) / 10) }
        func known(_ e: Nanos) -> Nanos { Nanos(e.rawValue + Int64(rng.next(below: 5_000)) * 1_000_000) }
        func id() -> UInt64 { rng.next(below: 7) == 0 ? 0 : 1 + rng.next(below: 60) }
        for _ in 0..<2_200 {
            let e = at()
            events.append(ev.bust("MD.XNAS.A.BUST", at: e, known: known(e), id: 1 + rng.next(below: 200)))
        }
        for i in 0..<1_800 {
            let e = at()
            switch i % 6 {
            case 0: events.append(ev.quote("MD.XNAS.B.QUOTE", at: e, known: known(e), bid: 100, ask: 101))
            case 1: events.append(ev.trade("MD.XNYS.A.TRADE", at: e, known: known(e), price: 100 + Int64(i % 9), id: id()))
            case 2: events.append(ev.trade("MD.XNAS.B.TRADE", at: e, known: known(e), price: 100 + Int64(i % 9), id: id()))
            case 3 where i % 5 == 0: events.append(ev.bust("MD.XNAS.B.BUST", at: e, known: known(e), id: id()))
            default: events.append(ev.trade("MD.XNAS.A.TRADE", at: e, known: known(e), price: 100 + Int64(i % 9), id: id()))
            }
        }
        var ends = [Int: Int64]()
        for i in events.indices where rng.next(below: 40) == 0 {
            ends[i] = events[i].knownTime.rawValue + Int64(rng.next(below: 3_000)) * 1_000_000
        }
        return (events, ends)
    }

    /// The exceptions by the definition, one row at a time: (row in (subject text, event time, known time,
    /// arrival) order, valid-until), in row order.
    func expected(_ events: [Event], texts: [String], ends: [Int: Int64]) -> [(row: Int, until: Int64)] {
        let order = events.indices.sorted {
            let a = events[$0], b = events[$1]
            let sa = texts[Int(a.subjectID)], sb = texts[Int(b.subjectID)]
            if sa != sb { return sa < sb }
            if a.eventTime != b.eventTime { return a.eventTime < b.eventTime }
            if a.knownTime != b.knownTime { return a.knownTime < b.knownTime }
            return $0 < $1
        }
        func stem(_ e: Event) -> Substring { Layout.stem(texts[Int(e.subjectID)]) }
        var out = [(row: Int, until: Int64)]()
        for (row, i) in order.enumerated() {
            let e = events[i]
            var until = ends[i] ?? .max
            if e.kind == .trade && e.c != 0 {
                if let next = order[(row + 1)...].first(where: {
                    let f = events[$0]
                    return f.subjectID == e.subjectID && f.eventTime == e.eventTime && f.kind == .trade && f.c == e.c
                }) { until = min(until, events[next].knownTime.rawValue) }
                for (j, b) in events.enumerated() where b.kind == .bust && b.c == e.c && stem(b) == stem(e)
                    && (ends[j] ?? .max) > e.knownTime.rawValue {
                    until = min(until, b.knownTime.rawValue)
                }
            }
            if until != .max { out.append((row, until)) }
        }
        return out
    }

    func validUntil(_ image: SegmentImage) -> [(row: Int, until: Int64)] {
        let bytes = image.files["valid_until"]!
        return bytes.withUnsafeBytes { p in
            (0..<Int(p.loadUnaligned(as: UInt64.self))).map {
                (Int(p.loadUnaligned(fromByteOffset: 8 + 16 * $0, as: UInt64.self)),
                 p.loadUnaligned(fromByteOffset: 16 + 16 * $0, as: Int64.self))
            }
        }
    }

    @Test(arguments: [1, 2, 3] as [UInt64])
    func bothHalvesResolveAsTheDefinitionSays(seed: UInt64) {
        let ev = Events()
        let (events, ends) = hostile(ev, seed: seed)
        let texts = (0...Int(events.map(\.subjectID).max()!)).map { ev.table.text(SubjectID($0)) }
        let want = expected(events, texts: texts, ends: ends)
        let one = SegmentImage.build(subjects: texts, events: events, generation: 1, ends: ends, parallelRows: .max)
        let two = SegmentImage.build(subjects: texts, events: events, generation: 1, ends: ends, parallelRows: 1)
        #expect(want.count > 300, "seed \(seed)")
        #expect(validUntil(one).map(\.row) == want.map(\.row), "seed \(seed)")
        #expect(validUntil(one).map(\.until) == want.map(\.until), "seed \(seed)")
        for name in SegmentImage.fileNames {
            let same = one.files[name] == two.files[name]
            #expect(same, "\(name) differs between one thread and two, seed \(seed)")
        }
    }
}
