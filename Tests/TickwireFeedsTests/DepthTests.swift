import Testing
import TickwireCore
@testable import TickwireFeeds

/// Depth on request: the BOOK events of the real slice, applied level by level, rebuild exactly the top N levels
/// of every book the handler holds, at the end and at every QUOTE along the way.
@Suite struct DepthTests {
    @Test(arguments: [1, 3, 10])
    func bookEventsRebuildTheTopLevelsOfEveryBook(levels: Int) throws {
        let sink = CollectingSink()
        let normalizer = ITCHNormalizer(sink: sink, clock: EasternClock(date: try TradingDate(parsing: "2019-12-30")))
        normalizer.depthLevels = levels
        let bytes = Fixture.bytes(Fixture.itchSlice)
        try bytes.withUnsafeBytes { (buffer: UnsafeRawBufferPointer) in
            do {
                try ITCHFileSource.replay(buffer, into: normalizer, policy: .stop, stop: StopSignal()) { _ in }
            } catch { throw error }
        }
        // The subscriber's view: per BOOK subject, an array of levels per side.
        var view: [String: (bids: [(Int64, Int64)], asks: [(Int64, Int64)])] = [:]
        var books = 0
        for e in sink.events {
            let subject = sink.subjects.text(e.subjectID)
            if e.kind == .quote {
                // Level 0 of the depth always agrees with the QUOTE published for the same change.
                let key = subject.replacingOccurrences(of: ".QUOTE", with: ".BOOK")
                if let v = view[key] {
                    #expect(v.bids[0].0 == e.a && v.bids[0].1 == e.b, "\(subject) bid")
                    #expect(v.asks[0].0 == e.c && v.asks[0].1 == e.d, "\(subject) ask")
                }
                continue
            }
            guard e.kind == .book else { continue }
            books += 1
            #expect(subject.hasSuffix(".BOOK"))
            var v = view[subject] ?? (Array(repeating: (0, 0), count: levels), Array(repeating: (0, 0), count: levels))
            let level = Int(e.c)
            #expect(level >= 0 && level < levels)
            if e.flags == Side.buy.rawValue { v.bids[level] = (e.a, e.b) } else { v.asks[level] = (e.a, e.b) }
            view[subject] = v
        }
        #expect(books > 0)
        // At the end, each view equals the handler's own books.
        for locate in 0..<(1 << 16) {
            guard let symbol = normalizer.symbol(locate: UInt16(locate)) else { continue }
            let book = normalizer.books.books[locate]
            guard let v = view["MD.XNAS.\(Subject.sanitizeToken(symbol)).BOOK"] else {
                #expect(book.bids.isEmpty && book.asks.isEmpty, "\(symbol) has levels but no BOOK events")
                continue
            }
            for level in 0..<levels {
                let bid = level < book.bids.count ? book.bids[book.bids.count - 1 - level] : PriceLevel(price: 0, shares: 0)
                let ask = level < book.asks.count ? book.asks[book.asks.count - 1 - level] : PriceLevel(price: 0, shares: 0)
                #expect(v.bids[level] == (Int64(bid.price) * 10_000, Int64(bid.shares) * 100_000_000), "\(symbol) bid level \(level)")
                #expect(v.asks[level] == (Int64(ask.price) * 10_000, Int64(ask.shares) * 100_000_000), "\(symbol) ask level \(level)")
            }
        }
    }

    @Test func noDepthUnlessAsked() throws {
        let sink = CollectingSink()
        let normalizer = ITCHNormalizer(sink: sink, clock: EasternClock(date: try TradingDate(parsing: "2019-12-30")))
        let bytes = Fixture.bytes(Fixture.itchSlice)
        try bytes.withUnsafeBytes { (buffer: UnsafeRawBufferPointer) in
            do { try ITCHFileSource.replay(buffer, into: normalizer, policy: .stop, stop: StopSignal()) { _ in } } catch { throw error }
        }
        #expect(!sink.events.contains { $0.kind == .book })
    }
}
