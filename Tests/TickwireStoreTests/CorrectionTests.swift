import Foundation
import Testing
import TickwireCore
@testable import TickwireStore
import TickwireTestSupport

/// Corrections as versions (docs/STORAGE.md, "Corrections"), on real stores: written, sealed, reopened.
@Suite(.timeLimit(.minutes(5))) struct CorrectionTests {
    let ev = Events()

    /// One event of each correctable kind, sealed.
    func store(seal: Bool = true) throws -> String {
        let dir = scratchDirectory()
        let status = Event.status(ev.table.intern(text: "MD.XNAS.AAPL.STATUS"), Status(category: .trading, state: UInt8(ascii: "T")),
                                  eventTime: t(3), knownTime: t(3))
        let book = Event(subjectID: ev.table.intern(text: "MD.XNAS.AAPL.BOOK"), kind: .book, flags: Side.buy.rawValue,
                         eventTime: t(4), knownTime: t(4), a: 99_000_000, b: 10_000_000_000, c: 0, d: 5)
        try ev.write([
            ev.quote("MD.XNAS.AAPL.QUOTE", at: t(1), known: t(1), bid: 100, ask: 101),
            ev.trade("MD.XNAS.AAPL.TRADE", at: t(2), known: t(2), price: 100, id: 7),
            status, book,
            ev.trade("MD.XNAS.AAPL.TRADE", at: t(5), known: t(5), price: 101, id: 8),
            ev.bust("MD.XNAS.AAPL.BUST", at: t(6), known: t(6), id: 8),
        ], to: dir, seal: seal)
        return dir
    }

    func correct(_ dir: String, at k: Nanos, _ requests: [CorrectionRequest]) throws -> [CorrectionRecord] {
        try StoreCorrections.apply(store: dir, requests, clock: { k })
    }

    func req(_ subject: String, _ at: Nanos, _ op: CorrectionRequest.Operation, line: Int = 1, tradeID: UInt64? = nil,
             known: Nanos? = nil) -> CorrectionRequest {
        CorrectionRequest(line: line, subject: subject, eventTime: at, knownTime: known, tradeID: tradeID, operation: op,
                          author: "alice", reason: "test")
    }

    func one(_ dir: String, _ subject: String, asOf: Nanos?) throws -> [StoredEvent] {
        try read(dir, subject, asOf: asOf)
    }

    /// Every kind, at K−1 ns, K and K+1 ns, and with no as-of (the latest).
    @Test func eachKindIsShownInTheVersionCurrentAtK() throws {
        let dir = try store(); defer { cleanUp(dir) }
        let k = t(100)
        let cases: [(String, Nanos, [String: Int64], (Event) -> Int64, Int64, Int64)] = [
            ("MD.XNAS.AAPL.QUOTE", t(1), ["bid": 99_000_000], { $0.a }, 100_000_000, 99_000_000),
            ("MD.XNAS.AAPL.TRADE", t(2), ["price": 95_000_000], { $0.a }, 100_000_000, 95_000_000),
            ("MD.XNAS.AAPL.STATUS", t(3), ["state": Int64(UInt8(ascii: "H"))], { $0.a & 0xff }, Int64(UInt8(ascii: "T")), Int64(UInt8(ascii: "H"))),
            ("MD.XNAS.AAPL.BOOK", t(4), ["size": 20_000_000_000], { $0.b }, 10_000_000_000, 20_000_000_000),
            ("MD.XNAS.AAPL.BUST", t(6), ["price": 42], { $0.a }, 0, 42),
        ]
        var requests = [CorrectionRequest]()
        for (i, c) in cases.enumerated() { requests.append(req(c.0, c.1, .replace(c.2), line: i + 1)) }
        let records = try correct(dir, at: k, requests)
        #expect(records.map(\.knownTime.rawValue) == (0..<5).map { k.rawValue + Int64($0) })
        for (i, c) in cases.enumerated() {
            let kc = records[i].knownTime
            let before = try one(dir, c.0, asOf: Nanos(kc.rawValue - 1))
            #expect(before.map { c.3($0.event) } == [c.4], "\(c.0) at K-1")
            #expect(try one(dir, c.0, asOf: kc).map { c.3($0.event) } == [c.5], "\(c.0) at K")
            #expect(try one(dir, c.0, asOf: Nanos(kc.rawValue + 1)).map { c.3($0.event) } == [c.5], "\(c.0) at K+1")
            #expect(try one(dir, c.0, asOf: nil).map { c.3($0.event) } == [c.5], "\(c.0) latest")
            #expect(try one(dir, c.0, asOf: nil).first?.event.knownTime == kc)
        }
        // The corrected bust still voids trade 8; the trade corrected at K is still shown, once.
        #expect(try one(dir, "MD.XNAS.AAPL.TRADE", asOf: nil).map(\.event.c) == [7])
    }

    /// Corrections written while the partition is open, then sealed: the same reads before and after sealing.
    @Test func correctionsOfAnOpenPartitionSurviveItsSealing() throws {
        let dir = try store(seal: false); defer { cleanUp(dir) }
        _ = try correct(dir, at: t(100), [req("MD.XNAS.AAPL.QUOTE", t(1), .replace(["ask": 102_000_000]))])
        let before = try digest(read(dir, asOf: t(99))) + ["--"] + digest(read(dir))
        let w = try StoreWriter(directory: dir, subjects: ev.table)
        try w.seal(); try w.close()
        #expect(FileManager.default.fileExists(atPath: dir + "/2026-01-05/MD.XNAS/corrections.twc"))
        #expect(try digest(read(dir, asOf: t(99))) + ["--"] + digest(read(dir)) == before)
        #expect(try one(dir, "MD.XNAS.AAPL.QUOTE", asOf: nil).map(\.event.c) == [102_000_000])
    }

    /// Late events arriving after corrections, then a second seal: the corrections still apply.
    @Test func aPartitionSealedAgainKeepsItsCorrections() throws {
        let dir = try store(); defer { cleanUp(dir) }
        _ = try correct(dir, at: t(100), [req("MD.XNAS.AAPL.QUOTE", t(1), .delete)])
        try ev.write([ev.quote("MD.XNAS.AAPL.QUOTE", at: t(0.5), known: t(200), bid: 1, ask: 2)], to: dir)
        #expect(try one(dir, "MD.XNAS.AAPL.QUOTE", asOf: nil).map(\.event.a) == [1_000_000])
        #expect(try one(dir, "MD.XNAS.AAPL.QUOTE", asOf: t(99)).map(\.event.a) == [100_000_000])
    }

    @Test func twoCorrectionsOfOneEvent() throws {
        let dir = try store(); defer { cleanUp(dir) }
        let r = try correct(dir, at: t(100), [req("MD.XNAS.AAPL.QUOTE", t(1), .replace(["bid": 1]), line: 1),
                                              req("MD.XNAS.AAPL.QUOTE", t(1), .replace(["bid": 2]), line: 2)])
        let r3 = try correct(dir, at: t(300), [req("MD.XNAS.AAPL.QUOTE", t(1), .replace(["bid": 3]))])
        let k1 = r[0].knownTime.rawValue, k2 = r[1].knownTime.rawValue, k3 = r3[0].knownTime.rawValue
        #expect(k2 == k1 + 1 && k3 == t(300).rawValue)
        for (k, bid) in [(k1 - 1, Int64(100_000_000)), (k1, 1), (k2 - 1, 1), (k2, 2), (k3 - 1, 2), (k3, 3), (k3 + 1, 3)] {
            #expect(try one(dir, "MD.XNAS.AAPL.QUOTE", asOf: Nanos(k)).map(\.event.a) == [bid], "as of \(k)")
        }
        let (id, versions) = try StoreCorrections.versions(store: dir, of: req("MD.XNAS.AAPL.QUOTE", t(1), .delete))
        #expect(id == EventIdentity(subject: "MD.XNAS.AAPL.QUOTE", eventTime: t(1), knownTime: t(1)))
        #expect(versions.map(\.origin) == [.stored, .replace, .replace, .replace])
        #expect(versions.map(\.knownTime.rawValue) == [t(1).rawValue, k1, k2, k3])
        #expect(versions.map(\.validUntil?.rawValue) == [k1, k2, k3, nil])
        #expect(versions.map(\.values?.a) == [100_000_000, 1, 2, 3])
        #expect(versions[1].record?.author == "alice")
    }

    @Test func deletionThenReinsert() throws {
        let dir = try store(); defer { cleanUp(dir) }
        let d = try correct(dir, at: t(100), [req("MD.XNAS.AAPL.TRADE", t(2), .delete, tradeID: 7)])[0].knownTime.rawValue
        let back = try correct(dir, at: t(200), [req("MD.XNAS.AAPL.TRADE", t(2), .replace(["size": 1]), tradeID: 7)])[0].knownTime.rawValue
        #expect(try one(dir, "MD.XNAS.AAPL.TRADE", asOf: Nanos(d - 1)).map(\.event.c) == [7])
        #expect(try one(dir, "MD.XNAS.AAPL.TRADE", asOf: Nanos(d)).isEmpty)
        #expect(try one(dir, "MD.XNAS.AAPL.TRADE", asOf: Nanos(back - 1)).isEmpty)
        #expect(try one(dir, "MD.XNAS.AAPL.TRADE", asOf: Nanos(back)).map(\.event.b) == [1])
        // Deleting twice is refused; an insert of a new event, then its deletion.
        #expect(throws: CorrectionError.self) {
            try correct(dir, at: t(300), [req("MD.XNAS.AAPL.QUOTE", t(1), .delete), req("MD.XNAS.AAPL.QUOTE", t(1), .delete, line: 2)])
        }
        let ins = try correct(dir, at: t(400), [req("MD.XNAS.MSFT.QUOTE", t(9), .insert(.quote, ["bid": 5, "ask": 6]))])[0]
        #expect(try one(dir, "MD.XNAS.MSFT.QUOTE", asOf: Nanos(ins.knownTime.rawValue - 1)).isEmpty)
        #expect(try one(dir, "MD.XNAS.MSFT.QUOTE", asOf: nil).map(\.event.c) == [6])
        _ = try correct(dir, at: t(500), [req("MD.XNAS.MSFT.QUOTE", t(9), .delete)])
        #expect(try one(dir, "MD.XNAS.MSFT.QUOTE", asOf: nil).isEmpty)
        #expect(try one(dir, "MD.XNAS.MSFT.QUOTE", asOf: t(450)).count == 1)
    }

    /// Withdrawing a bust shows its trade again from that moment.
    @Test func deletingABustRestoresItsTrade() throws {
        let dir = try store(); defer { cleanUp(dir) }
        #expect(try one(dir, "MD.XNAS.AAPL.TRADE", asOf: nil).map(\.event.c) == [7])
        let k = try correct(dir, at: t(100), [req("MD.XNAS.AAPL.BUST", t(6), .delete)])[0].knownTime
        #expect(try one(dir, "MD.XNAS.AAPL.TRADE", asOf: Nanos(k.rawValue - 1)).map(\.event.c) == [7])
        #expect(try one(dir, "MD.XNAS.AAPL.TRADE", asOf: k).map(\.event.c) == [7, 8])
        #expect(try one(dir, "MD.XNAS.AAPL.BUST", asOf: k).isEmpty)
        let (_, v) = try StoreCorrections.versions(store: dir, of: req("MD.XNAS.AAPL.TRADE", t(5), .delete, tradeID: 8))
        #expect(v.map(\.origin) == [.stored, .restored])
    }

    @Test func aCorrectionNamingNoEventIsAnErrorNamingItsLineAndNothingIsWritten() throws {
        let dir = try store(); defer { cleanUp(dir) }
        let good = req("MD.XNAS.AAPL.QUOTE", t(1), .delete, line: 1)
        let bad = req("MD.XNAS.AAPL.QUOTE", t(1.5), .delete, line: 2)
        #expect(throws: CorrectionError.noSuchEvent(line: 2, identity: StoreCorrections.describe(bad))) {
            try correct(dir, at: t(100), [good, bad])
        }
        #expect(!FileManager.default.fileExists(atPath: dir + "/2026-01-05/MD.XNAS/corrections.twc"))
        let wrongID = req("MD.XNAS.AAPL.TRADE", t(2), .delete, line: 3, tradeID: 99)
        #expect(throws: CorrectionError.noSuchEvent(line: 3, identity: StoreCorrections.describe(wrongID))) { try correct(dir, at: t(100), [wrongID]) }
        let badField = req("MD.XNAS.AAPL.QUOTE", t(1), .replace(["price": 1]), line: 4)
        do { _ = try correct(dir, at: t(100), [badField]); Issue.record("accepted") } catch {
            #expect("\(error)".hasPrefix("line 4: a QUOTE has no field 'price'"))
        }
    }

    @Test func twoEventsAtOneInstantAreToldApart() throws {
        let dir = scratchDirectory(); defer { cleanUp(dir) }
        try ev.write([ev.quote("MD.XNAS.AAPL.QUOTE", at: t(1), known: t(1), bid: 1, ask: 2),
                      ev.quote("MD.XNAS.AAPL.QUOTE", at: t(1), known: t(1), bid: 3, ask: 4)], to: dir)
        let plain = req("MD.XNAS.AAPL.QUOTE", t(1), .delete, line: 5)
        #expect(throws: CorrectionError.ambiguous(line: 5, identity: StoreCorrections.describe(plain), matches: 2)) {
            try correct(dir, at: t(100), [plain])
        }
        var second = plain
        second.ordinal = 1
        _ = try correct(dir, at: t(100), [second])
        #expect(try one(dir, "MD.XNAS.AAPL.QUOTE", asOf: nil).map(\.event.a) == [1_000_000])
    }

    /// A flipped byte anywhere in a record breaks its CRC or the chain: verify and every read report it.
    @Test func aFlippedByteInTheChainIsReported() throws {
        let dir = try store(); defer { cleanUp(dir) }
        _ = try correct(dir, at: t(100), [req("MD.XNAS.AAPL.QUOTE", t(1), .replace(["bid": 1]), line: 1),
                                          req("MD.XNAS.AAPL.TRADE", t(2), .delete, line: 2, tradeID: 7)])
        let ok = try StoreCorrections.verify(store: dir)
        #expect(ok.ok && ok.records == 2 && ok.logs.count == 1)
        let path = dir + "/2026-01-05/MD.XNAS/corrections.twc"
        let clean = try Data(contentsOf: URL(fileURLWithPath: path))
        let seed = testSeed()
        var rng = SplitMix(seed: seed)
        for _ in 0..<64 {
            var bytes = clean
            let at = Int(rng.next() % UInt64(bytes.count))
            bytes[at] ^= UInt8(1 << (rng.next() % 8))
            try bytes.write(to: URL(fileURLWithPath: path))
            let v = try StoreCorrections.verify(store: dir)
            #expect(!v.ok, "flip at byte \(at), seed \(seed)")
            #expect(v.firstDamage?.path == path)
            let reader = try StoreReader(directory: dir)
            _ = try reader.events(StoreQuery(subjects: SubjectPattern(">"), from: t(0), to: t(10)))
            #expect(throws: StoreError.self) { try reader.checkIntact() }
        }
        // An append cut short (the file ends inside a record) was never reported as made: not damage.
        try clean.prefix(clean.count - 3).write(to: URL(fileURLWithPath: path))
        let torn = try StoreCorrections.verify(store: dir)
        #expect(torn.ok && torn.records == 1)
    }

    /// The same replay, byte for byte: twice with one reader, and after a restart (a new reader, a new process's view).
    @Test func replayOutputIsIdenticalAcrossRunsAndARestart() throws {
        let dir = try store(); defer { cleanUp(dir) }
        _ = try correct(dir, at: t(100), [req("MD.XNAS.AAPL.QUOTE", t(1), .replace(["bid": 1])),
                                          req("MD.XNAS.AAPL.BUST", t(6), .delete, line: 2)])
        func replay(_ reader: StoreReader, asOf: Nanos?) throws -> [UInt8] {
            let path = dir + "/out-\(UInt32.random(in: 0...UInt32.max)).jsonl"
            let q = try StoreQuery(subjects: SubjectPattern(">"), from: t(0), to: t(10), asOf: asOf)
            try Replayer.run(reader, q, pace: .max, into: StreamReplaySink(try ByteOutput(path: path), format: .jsonl))
            defer { try? FileManager.default.removeItem(atPath: path) }
            return Array(try Data(contentsOf: URL(fileURLWithPath: path)))
        }
        let reader = try StoreReader(directory: dir)
        for asOf in [nil, t(99), t(100)] {
            let first = try replay(reader, asOf: asOf)
            #expect(try replay(reader, asOf: asOf) == first)
            #expect(try replay(StoreReader(directory: dir), asOf: asOf) == first)
        }
        #expect(try replay(reader, asOf: t(99)) != replay(reader, asOf: nil))
    }

    @Test func asOfJoinSeesTheCorrectedQuote() throws {
        let dir = try store(); defer { cleanUp(dir) }
        let k = try correct(dir, at: t(100), [req("MD.XNAS.AAPL.QUOTE", t(1), .replace(["bid": 77_000_000]))])[0].knownTime
        func bids(_ asOf: Nanos?) throws -> [Int64?] {
            let j = try AsOfJoin(trades: SubjectPattern("MD.*.*.TRADE"), quotes: SubjectPattern("MD.*.*.QUOTE"), from: t(0), to: t(10),
                                 asOf: asOf, direction: .backward, strict: false, tolerance: nil)
            var out = [Int64?]()
            try StoreReader(directory: dir).asOfJoin(j) { b in for i in 0..<b.count { out.append(b.row(i).quote?.bid.e8) } }
            return out
        }
        #expect(try bids(Nanos(k.rawValue - 1)) == [100_000_000])
        #expect(try bids(k) == [77_000_000])
    }

    @Test func changesBetweenTwoMomentsListWhatEachCorrectionDid() throws {
        let dir = try store(); defer { cleanUp(dir) }
        _ = try correct(dir, at: t(100), [req("MD.XNAS.AAPL.QUOTE", t(1), .replace(["bid": 1]))])
        _ = try correct(dir, at: t(200), [req("MD.XNAS.AAPL.QUOTE", t(1), .delete), req("MD.XNAS.AAPL.TRADE", t(2), .replace(["price": 5]), line: 2, tradeID: 7)])
        let all = try StoreCorrections.changes(store: dir, from: t(0), to: t(1000))
        #expect(all.map(\.record.number) == [1, 2, 3])
        let later = try StoreCorrections.changes(store: dir, from: t(100), to: t(1000))
        #expect(later.map { $0.record.target.subject } == ["MD.XNAS.AAPL.QUOTE", "MD.XNAS.AAPL.TRADE"])
        #expect(later[0].before?.a == 1 && later[0].after == nil)
        #expect(later[1].before?.a == 100_000_000 && later[1].after?.a == 5)
        #expect(try StoreCorrections.changes(store: dir, from: t(100), to: t(1000), subjects: SubjectPattern("MD.*.*.TRADE")).count == 1)
        #expect(try StoreCorrections.changes(store: dir, from: t(200) , to: t(1000)).count == 1)
    }

    @Test func cleansingRulesWriteCorrectionsAuthoredByTheRule() throws {
        let dir = scratchDirectory(); defer { cleanUp(dir) }
        try ev.write([
            ev.quote("MD.XNAS.AAPL.QUOTE", at: t(1), known: t(1), bid: 100, ask: 101),
            ev.trade("MD.XNAS.AAPL.TRADE", at: t(2), known: t(2), price: 100, id: 1),
            ev.trade("MD.XNAS.AAPL.TRADE", at: t(3), known: t(3), price: 150, id: 2),      // a bad print
            ev.quote("MD.XNAS.AAPL.QUOTE", at: t(4), known: t(4), bid: 105, ask: 104),     // crossed
            ev.trade("MD.XNAS.AAPL.TRADE", at: t(5), known: t(5), price: 104, id: 3),
        ], to: dir)
        let q = try StoreQuery(subjects: SubjectPattern("MD.XNAS.>"), from: t(0), to: t(10))
        let crossed = try CleansingRule.crossedQuotes.requests(StoreReader(directory: dir), q)
        #expect(crossed.map(\.eventTime) == [t(4)])
        _ = try StoreCorrections.apply(store: dir, crossed, clock: { t(100) })
        let band = try CleansingRule.priceBand(fraction: 0.05).requests(StoreReader(directory: dir), q)
        #expect(band.map(\.tradeID) == [2])
        _ = try StoreCorrections.apply(store: dir, band, clock: { t(200) })
        #expect(try one(dir, "MD.XNAS.AAPL.TRADE", asOf: nil).map(\.event.c) == [1, 3])
        #expect(try one(dir, "MD.XNAS.AAPL.QUOTE", asOf: nil).count == 1)
        #expect(try one(dir, "MD.XNAS.AAPL.TRADE", asOf: t(150)).count == 3)
        let (_, v) = try StoreCorrections.versions(store: dir, of: req("MD.XNAS.AAPL.TRADE", t(3), .delete, tradeID: 2))
        #expect(v.last?.record?.author == "rule:price-band(0.05)")
        // A quote a person corrected into a crossed one is found by its current version and deleted.
        _ = try StoreCorrections.apply(store: dir, [req("MD.XNAS.AAPL.QUOTE", t(1), .replace(["bid": 102_000_000]))], clock: { t(300) })
        let again = try CleansingRule.crossedQuotes.requests(StoreReader(directory: dir), q)
        #expect(again.map(\.knownTime) == [t(300)])
        _ = try StoreCorrections.apply(store: dir, again, clock: { t(400) })
        #expect(try one(dir, "MD.XNAS.AAPL.QUOTE", asOf: nil).isEmpty)
        #expect(try one(dir, "MD.XNAS.AAPL.QUOTE", asOf: t(350)).map(\.event.a) == [102_000_000])
        // Run again: nothing new.
        #expect(try CleansingRule.priceBand(fraction: 0.05).requests(StoreReader(directory: dir), q).isEmpty)
        #expect(try CleansingRule.crossedQuotes.requests(StoreReader(directory: dir), q).isEmpty)
    }

    /// fill-session: a symbol quoted on the reference venue and not at all on the venue gets the reference's
    /// quotes, as inserts authored by the rule (a venue with no partition that day too); nothing else is touched,
    /// nothing is visible before the fill's known time, and a second run asks for nothing.
    @Test func fillSessionInsertsTheReferenceQuotesWhereAVenueHasNone() throws {
        let dir = scratchDirectory(); defer { cleanUp(dir) }
        try ev.write([
            ev.quote("MD.XNAS.AAPL.QUOTE", at: t(1), known: t(1), bid: 100, ask: 101),
            ev.quote("MD.XNAS.MSFT.QUOTE", at: t(2), known: t(2), bid: 300, ask: 301),
            ev.quote("MD.XNYS.MSFT.QUOTE", at: t(3), known: t(3), bid: 299, ask: 302),
            ev.quote("MD.XNAS.AAPL.QUOTE", at: t(4), known: t(4), bid: 102, ask: 103),
            ev.trade("MD.XNAS.AAPL.TRADE", at: t(5), known: t(5), price: 102, id: 1),
        ], to: dir)
        let q = try StoreQuery(subjects: SubjectPattern("MD.>"), from: t(0), to: t(10))
        let nyse = try CleansingRule.fillSession(venue: "XNYS", reference: "XNAS").requests(StoreReader(directory: dir), q)
        #expect(nyse.map(\.subject) == ["MD.XNYS.AAPL.QUOTE", "MD.XNYS.AAPL.QUOTE"])
        #expect(nyse.map(\.eventTime) == [t(1), t(4)])
        let boston = try CleansingRule.fillSession(venue: "XBOS", reference: "XNAS").requests(StoreReader(directory: dir), q)
        #expect(Set(boston.map(\.subject)) == ["MD.XBOS.AAPL.QUOTE", "MD.XBOS.MSFT.QUOTE"] && boston.count == 3)
        _ = try StoreCorrections.apply(store: dir, nyse + boston, clock: { t(100) })
        let filled = try one(dir, "MD.XNYS.AAPL.QUOTE", asOf: nil)
        #expect(filled.map(\.event.a) == [100_000_000, 102_000_000] && filled.map(\.event.c) == [101_000_000, 103_000_000])
        #expect(filled.map(\.event.eventTime) == [t(1), t(4)])
        #expect(try one(dir, "MD.XNYS.AAPL.QUOTE", asOf: t(99)).isEmpty)
        #expect(try one(dir, "MD.XBOS.MSFT.QUOTE", asOf: nil).map(\.event.a) == [300_000_000])
        #expect(try one(dir, "MD.XNYS.MSFT.QUOTE", asOf: nil).map(\.event.a) == [299_000_000])
        #expect(try one(dir, "MD.XNYS.AAPL.TRADE", asOf: nil).isEmpty)       // trades are never made up
        let (_, v) = try StoreCorrections.versions(store: dir, of: req("MD.XNYS.AAPL.QUOTE", t(4), .delete))
        #expect(v.last?.record?.author == "rule:fill-session(XNYS<-XNAS)")
        #expect(try CleansingRule.fillSession(venue: "XNYS", reference: "XNAS").requests(StoreReader(directory: dir), q).isEmpty)
        #expect(try CleansingRule.fillSession(venue: "XBOS", reference: "XNAS").requests(StoreReader(directory: dir), q).isEmpty)
    }

    /// `correct` leaves the corrected segment beside the sealed one; reading it gives exactly what rebuilding gives.
    @Test func theCorrectedSegmentReadsAsTheRebuiltOverlay() throws {
        let dir = try store(); defer { cleanUp(dir) }
        _ = try correct(dir, at: t(100), [req("MD.XNAS.AAPL.QUOTE", t(1), .replace(["bid": 1])),
                                          req("MD.XNAS.AAPL.BUST", t(6), .delete, line: 2),
                                          req("MD.XNAS.AAPL.TRADE", t(2), .delete, line: 3, tradeID: 7)])
        let key = PartitionKey(day: Layout.day(of: t(0).rawValue), root: "MD.XNAS")
        let partition = dir + "/" + key.relativePath
        let caches = FS.list(partition).filter { $0.hasPrefix("corrected-") }
        #expect(caches.count == 1)
        #expect(try StoreReader(directory: dir).segment(key, SubjectPattern(">"))?.path.contains("/corrected-") == true)
        let moments: [Nanos?] = [nil, t(99), t(100), Nanos(t(100).rawValue + 1), Nanos(t(100).rawValue + 2), Nanos(t(100).rawValue + 3)]
        let cached = try moments.map { try digest(read(dir, asOf: $0)) }
        try FS.removeTree(partition + "/" + caches[0])
        #expect(try StoreReader(directory: dir).segment(key, SubjectPattern(">"))?.path.hasSuffix("(corrected)") == true)
        #expect(try moments.map { try digest(read(dir, asOf: $0)) } == cached)
        // A later correction replaces it; late data sealed into a new generation makes it stale (rebuilt, not used).
        _ = try correct(dir, at: t(200), [req("MD.XNAS.AAPL.QUOTE", t(1), .replace(["bid": 2]))])
        #expect(FS.list(partition).filter { $0.hasPrefix("corrected-") }.count == 1)
        try ev.write([ev.quote("MD.XNAS.AAPL.QUOTE", at: t(0.5), known: t(300), bid: 1, ask: 2)], to: dir)
        #expect(try StoreReader(directory: dir).segment(key, SubjectPattern(">"))?.path.hasSuffix("(corrected)") == true)
        #expect(try one(dir, "MD.XNAS.AAPL.QUOTE", asOf: nil).map(\.event.a) == [1_000_000, 2])
    }

    /// `export --as-of`: before a correction's known time, the file is byte for byte the one written before it.
    @Test func exportAsOfKMinusOneIsTheExportFromBefore() throws {
        let dir = try store(); defer { cleanUp(dir) }
        func export(_ asOf: Nanos?) throws -> Data {
            let path = dir + "/x-\(UInt32.random(in: 0...UInt32.max)).arrow"
            defer { try? FileManager.default.removeItem(atPath: path) }
            try Frames.writeArrow(StoreReader(directory: dir), StoreQuery(subjects: SubjectPattern(">"), from: t(0), to: t(10), asOf: asOf), to: ByteOutput(path: path), layout: .file)
            return try Data(contentsOf: URL(fileURLWithPath: path))
        }
        let before = try export(nil)
        let k = try correct(dir, at: t(100), [req("MD.XNAS.AAPL.QUOTE", t(1), .replace(["bid": 1]))])[0].knownTime
        #expect(try export(Nanos(k.rawValue - 1)) == before)
        #expect(try export(k) != before)
        #expect(try export(k) == export(nil))
    }

    /// An append cut short by a crash is ignored, then cut by the next append, which chains onto the last whole record.
    @Test func aTornAppendIsCutByTheNextOne() throws {
        let dir = try store(); defer { cleanUp(dir) }
        _ = try correct(dir, at: t(100), [req("MD.XNAS.AAPL.QUOTE", t(1), .replace(["bid": 1]))])
        _ = try correct(dir, at: t(200), [req("MD.XNAS.AAPL.QUOTE", t(1), .replace(["bid": 2]))])
        let path = dir + "/2026-01-05/MD.XNAS/corrections.twc"
        let whole = try Data(contentsOf: URL(fileURLWithPath: path))
        try whole.prefix(whole.count - 10).write(to: URL(fileURLWithPath: path))
        #expect(try one(dir, "MD.XNAS.AAPL.QUOTE", asOf: nil).map(\.event.a) == [1])
        let r = try correct(dir, at: t(300), [req("MD.XNAS.AAPL.QUOTE", t(1), .replace(["bid": 3]))])
        #expect(r.map(\.number) == [2])
        let v = try StoreCorrections.verify(store: dir)
        #expect(v.ok && v.records == 2)
        #expect(try one(dir, "MD.XNAS.AAPL.QUOTE", asOf: t(250)).map(\.event.a) == [1])
        #expect(try one(dir, "MD.XNAS.AAPL.QUOTE", asOf: nil).map(\.event.a) == [3])
    }

    /// A venue's missing print inserted on a day the store has no partition for: the partition is made for it.
    @Test func anInsertOnADayWithNoDataMakesItsPartition() throws {
        let dir = try store(); defer { cleanUp(dir) }
        let nextDay = Nanos(t(1).rawValue + Nanos.perDay)
        let r = try correct(dir, at: t(100), [req("MD.XNYS.IBM.TRADE", nextDay, .insert(.trade, ["price": 5, "size": 1, "trade_id": 3]))])[0]
        let got = try read(dir, "MD.XNYS.>", from: t(0), to: Nanos(nextDay.rawValue + 1))
        #expect(got.map(\.subject) == ["MD.XNYS.IBM.TRADE"] && got[0].event.knownTime == r.knownTime && got[0].event.c == 3)
        #expect(try read(dir, "MD.XNYS.>", from: t(0), to: Nanos(nextDay.rawValue + 1), asOf: t(99)).isEmpty)
        try ev.write([ev.trade("MD.XNYS.IBM.TRADE", at: Nanos(nextDay.rawValue + 5), known: t(150), price: 6, id: 4)], to: dir)
        #expect(try read(dir, "MD.XNYS.>", from: t(0), to: Nanos(nextDay.rawValue + 10)).map(\.event.c) == [3, 4])
    }

    /// A trade the feed re-sent: the latest is what a trade id names; versions lists the feed's, then the people's.
    @Test func aResentTradeIsCorrectedInItsLatestVersion() throws {
        let dir = scratchDirectory(); defer { cleanUp(dir) }
        try ev.write([ev.trade("MD.XNAS.AAPL.TRADE", at: t(2), known: t(2), price: 100, id: 7),
                      ev.trade("MD.XNAS.AAPL.TRADE", at: t(2), known: t(50), price: 101, id: 7)], to: dir)
        let k = try correct(dir, at: t(100), [req("MD.XNAS.AAPL.TRADE", t(2), .replace(["price": 102_000_000]), tradeID: 7)])[0].knownTime
        #expect(try one(dir, "MD.XNAS.AAPL.TRADE", asOf: t(10)).map(\.event.a) == [100_000_000])
        #expect(try one(dir, "MD.XNAS.AAPL.TRADE", asOf: t(60)).map(\.event.a) == [101_000_000])
        #expect(try one(dir, "MD.XNAS.AAPL.TRADE", asOf: k).map(\.event.a) == [102_000_000])
        let (_, v) = try StoreCorrections.versions(store: dir, of: req("MD.XNAS.AAPL.TRADE", t(2), .delete, tradeID: 7))
        #expect(v.map(\.knownTime) == [t(2), t(50), k] && v.map(\.origin) == [.stored, .stored, .replace])
        #expect(v.map(\.validUntil) == [t(50), k, nil])
        let old = req("MD.XNAS.AAPL.TRADE", t(2), .delete, line: 9, tradeID: 7, known: t(2))
        do { _ = try correct(dir, at: t(200), [old]); Issue.record("an earlier version was corrected") } catch {
            #expect("\(error)".contains("line 9: the trade") && "\(error)".contains("superseded by the feed's version"))
        }
    }

    /// A partition without corrections is read as before: no overlay, the mapped sealed segment itself.
    @Test func aCorrectionFreePartitionIsReadAsBefore() throws {
        let dir = try store(); defer { cleanUp(dir) }
        let reader = try StoreReader(directory: dir)
        let seg = try reader.segment(PartitionKey(day: Layout.day(of: t(0).rawValue), root: "MD.XNAS"), SubjectPattern(">"))
        #expect(seg?.path.hasSuffix("sealed-00000001") == true)
    }
}
