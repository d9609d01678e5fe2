import Foundation
import Testing
import TickwireCore
import TickwireTestSupport
@testable import TickwireFeeds

/// The tardis reader's byte-level, two-thread path against the field readers alone (how every row was read
/// before): the same events, counts and errors, line numbers included, across many segment boundaries.
@Suite(.timeLimit(.minutes(5))) struct CSVFastPathTests {
    let symbols = ["BTCUSDT", "ETHUSDT", "SOL", "SOLUSDT", "12345678", "123456789", "ABCDEFGHIJKLMNOP", "ABCDEFGHIJKLMNOPQ",
                   "BTC-PERPETUAL-2026-03-27"]

    /// Rows the fast path takes and rows it hands to the field readers: odd but valid forms and errors.
    func file(kind: TardisCSVSource.Kind, rows: Int, seed: UInt64) -> String {
        var rng = SplitMix(seed: seed)
        var text = kind == .trades ? "exchange,symbol,timestamp,local_timestamp,id,side,price,amount\n"
                                   : "exchange,symbol,timestamp,local_timestamp,ask_amount,ask_price,bid_price,bid_amount\n"
        let odd = ["+7", "1e5", "-0.5", "1.100000000", "1.123456789", "", "12345678901.5", "abc", ".5", "5.", "-"]
        func pick(_ normal: String) -> String { rng.next(below: 40) == 0 ? odd[Int(rng.next(below: UInt64(odd.count)))] : normal }
        for i in 0..<rows {
            if rng.next(below: 100) == 0 { text += rng.next(below: 2) == 0 ? "\n" : "\r\n"; continue }
            // Symbols around the subject table's 8- and 16-byte keys (one a prefix of another, one longer than
            // 16 bytes), and hundreds of others so that its table grows.
            let sym = rng.next(below: 4) == 0 ? "S\(rng.next(below: 400))"
                : symbols[Int(rng.next(below: UInt64(symbols.count)))]
            let ex = rng.next(below: 50) == 0 ? "" : ["binance-futures", "deribit", "a-venue-longer-than-sixteen"][Int(rng.next(below: 3))]
            let ts = 1_582_329_602_111_000 + Int64(i) * 1000
            var fields = [ex, sym, pick(String(ts)), pick(String(ts + 300))]
            if kind == .trades {
                fields += [pick(String(42_000_000 + i)), ["buy", "sell", "unknown", "", "BUY"][Int(rng.next(below: 5))],
                           pick("9682.\(rng.next(below: 100))"), pick("0.\(rng.next(below: 1000))")]
            } else {
                fields += [pick("1.5"), pick("9683.1"), pick("9682.\(rng.next(below: 9))"), pick("\(rng.next(below: 9))")]
            }
            if rng.next(below: 60) == 0 { fields.removeLast() }          // too few fields
            if rng.next(below: 60) == 0 { fields.append("extra") }       // more are fine
            text += fields.joined(separator: ",") + (rng.next(below: 10) == 0 ? "\r\n" : "\n")
        }
        return text
    }

    /// The reference: every row through `CSVRows` and the field readers, as the source read them before.
    func reference(_ path: String, kind: TardisCSVSource.Kind, policy: ErrorPolicy) -> (events: [String], errors: Int, first: CSVError?) {
        let source = TardisCSVSource(path: path, kind: kind, options: FeedOptions(errorPolicy: policy))
        let sink = CollectingSink()
        var cache = [String: SubjectID](), events = [String](), errors = 0, first: CSVError?, col: [Int]?
        CSVRows(path: path, file: try! MappedFile(path: path)).forEach { line, fields in
            guard let c = col else { col = [0, 1, 2, 3, 4, 5, 6, 7]; return true }
            do throws(CSVError) {
                let e = try source.event(fields, c, CSVField(path: path, line: line), sink, &cache)
                events.append(shown(e, sink.subjects))
            } catch {
                errors += 1
                if first == nil { first = error }
                if policy == .stop { return false }
            }
            return true
        }
        return (events, errors, first)
    }

    /// An event by its subject's text: the two threads intern subjects in whichever order they meet them, and a
    /// subject id is a handle, not data (the store's dictionaries are in text order).
    private func shown(_ e: Event, _ subjects: SubjectTable) -> String {
        var plain = e
        plain.subjectID = 0
        return "\(subjects.text(e.subjectID)) \(plain)"
    }

    @Test(arguments: [TardisCSVSource.Kind.trades, .quotes], [ErrorPolicy.skip, .stop])
    func theFastPathReadsExactlyAsTheFieldReaders(kind: TardisCSVSource.Kind, policy: ErrorPolicy) throws {
        let seed = testSeed()
        let path = NSTemporaryDirectory() + "tardis-fast-\(getpid())-\(kind)-\(policy).csv"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try file(kind: kind, rows: 20_000, seed: seed).write(toFile: path, atomically: false, encoding: .utf8)
        let expected = reference(path, kind: kind, policy: policy)
        let source = TardisCSVSource(path: path, kind: kind, options: FeedOptions(errorPolicy: policy))
        source.segmentBytes = 997   // hundreds of segments, parsed by both threads
        let sink = CollectingSink()
        var thrown: CSVError?
        do { try source.run(into: sink, stop: StopSignal()) } catch let e as CSVError { thrown = e }
        #expect(sink.events.map { shown($0, sink.subjects) } == expected.events, "seed \(seed)")
        #expect(expected.errors > 0, "seed \(seed)")
        if policy == .stop {
            #expect(thrown == expected.first, "seed \(seed)")
        } else {
            #expect(thrown == nil && counter(source, "errors") == UInt64(expected.errors), "seed \(seed)")
            #expect(source.skipSummary?.contains(expected.first!.description) == true, "seed \(seed)")
        }
    }

    /// A field's words read where fewer than 16 bytes follow its start (the file's last bytes) are the words read
    /// with room to spare.
    @Test func aFieldsWordsAreTheSameAtTheEndOfTheFile() {
        let text = Array("xx,ABCDEFGHIJKLMNOPQ,123456789".utf8)
        text.withUnsafeBytes { p in
            let padded = text + [UInt8](repeating: 0x55, count: 16)
            padded.withUnsafeBytes { q in
                for start in 0..<text.count {
                    for end in start...min(text.count, start + 16) {
                        #expect(SubjectsByBytes.words(p, start..<end) == SubjectsByBytes.words(q, start..<end), "\(start)..<\(end)")
                    }
                }
            }
        }
    }

    /// Two pairs have the same short key exactly when their bytes are the same: prefixes, a trailing zero byte,
    /// one byte changed anywhere, the 8- and 16-byte edges; a field longer than 16 bytes has no short key.
    @Test func shortKeysAreEqualExactlyForEqualPairs() {
        var texts = ["", "A", "A\u{0}", "AB", "ABCDEFGH", "ABCDEFGH\u{0}", "ABCDEFGHI", "ABCDEFGHIJKLMNOP", "ABCDEFGHIJKLMNO"]
        for i in 0..<16 { texts.append(String("ABCDEFGHIJKLMNOP".enumerated().map { $0.offset == i ? "x" : $0.element })) }
        let pairs = texts.flatMap { a in ["SOL", "SOLUSDT", "SOLUSDT\u{0}", ""].map { (a, $0) } }
        var keys = [SubjectsByBytes.ShortKey]()
        for (a, b) in pairs {
            let line = Array((a + "," + b + "," + String(repeating: "9", count: 20)).utf8)
            line.withUnsafeBytes { p in
                keys.append(SubjectsByBytes.shortKey(p, 0..<a.utf8.count, (a.utf8.count + 1)..<(a.utf8.count + 1 + b.utf8.count))!)
            }
        }
        for i in pairs.indices {
            for j in pairs.indices {
                #expect((keys[i] == keys[j]) == (pairs[i] == pairs[j]), "\(pairs[i]) against \(pairs[j])")
            }
        }
        let long = Array("ABCDEFGHIJKLMNOPQ,SOL,0000000000000000".utf8)
        #expect(long.withUnsafeBytes { SubjectsByBytes.shortKey($0, 0..<17, 18..<21) } == nil)
    }
}
