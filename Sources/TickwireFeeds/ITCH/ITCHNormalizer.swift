import TickwireCore

/// What an ITCH source counted. Plain integers, owned by the source's thread; published via `pairs()`.
public struct ITCHCounts: Sendable {
    /// Messages by type byte.
    public var byType = [UInt64](repeating: 0, count: 256)
    /// Bad frames by `ITCHError.Problem.counterName`.
    public var errors: [String: UInt64] = [:]
    /// E, C, X, D, U referring to an order never seen (added before the capture began).
    public var unknownOrders: UInt64 = 0
    /// A or F (or U's new reference) reusing a live order reference; the second is ignored.
    public var duplicateOrders: UInt64 = 0
    /// Events not published because no symbol is known yet for their stock locate.
    public var unknownLocate: UInt64 = 0
    /// C executions marked non-printable: they move the book but print no trade.
    public var nonPrintable: UInt64 = 0
    /// Q crosses of zero shares (no cross happened); no trade is printed.
    public var emptyCrosses: UInt64 = 0
    public var trades: UInt64 = 0, quotes: UInt64 = 0, statuses: UInt64 = 0, busts: UInt64 = 0, books: UInt64 = 0
    /// Under `on_error = "skip"`: bytes stepped over to resynchronise, and the damaged messages among them (a lower
    /// bound where the reader had to scan; see `BinaryFILEReader.skipBadFrame()`).
    public var skippedBytes: UInt64 = 0, skippedMessages: UInt64 = 0
    /// Books marked stale (one per book per loss), and snapshot messages applied by `rebuild`.
    public var staleMarks: UInt64 = 0, snapshotMessages: UInt64 = 0

    public init() {}

    public var messages: UInt64 { byType.reduce(0, &+) }
    public var errorCount: UInt64 { errors.values.reduce(0, &+) }
    public func count(_ type: ITCHMessageType) -> UInt64 { byType[Int(type.rawValue)] }

    public mutating func record(_ error: ITCHError) { errors[error.problem.counterName, default: 0] += 1 }

    /// `messages`, `messages.A`…, `errors`, `errors.<problem>`, `skipped_bytes`, `skipped_messages` (when any),
    /// `unknown_orders`, `duplicate_orders`, `unknown_locate`, `non_printable`, `empty_crosses`,
    /// `events.trade|quote|status|bust`.
    public func pairs() -> [(name: String, value: UInt64)] {
        var out: [(name: String, value: UInt64)] = [("messages", messages)]
        for t in ITCHMessageType.allCases where byType[Int(t.rawValue)] > 0 { out.append(("messages.\(t.letter)", count(t))) }
        out.append(("errors", errorCount))
        for (k, v) in errors.sorted(by: { $0.key < $1.key }) { out.append(("errors.\(k)", v)) }
        if skippedBytes > 0 || skippedMessages > 0 { out += [("skipped_bytes", skippedBytes), ("skipped_messages", skippedMessages)] }
        out += [("unknown_orders", unknownOrders), ("duplicate_orders", duplicateOrders), ("unknown_locate", unknownLocate),
                ("non_printable", nonPrintable), ("empty_crosses", emptyCrosses), ("events.trade", trades), ("events.quote", quotes), ("events.book", books),
                ("events.status", statuses), ("events.bust", busts)]
        if staleMarks > 0 || snapshotMessages > 0 { out += [("stale_marks", staleMarks), ("snapshot_messages", snapshotMessages)] }
        return out
    }
}

/// Turns ITCH 5.0 messages into Tickwire events: keeps the order books, learns the locate → symbol map, and
/// publishes `MD.XNAS.<SYM>.QUOTE` when a top of book changes, `.TRADE` for E, printable C, P and Q, `.STATUS`
/// for H, Y, K and h, and with numbers for R, J, I and N (and `MD.XNAS._FEED.STATUS` for the feed-wide S, W and
/// V), `.BUST` for B (repeating the voided
/// trade's price, size and side when it is among the last 262,144 trades).
///
/// Trade sides are the aggressor's: an execution against a resting buy order is a sell. Q crosses have no
/// side. An E against an order never seen prints nothing (its price is unknown) and is counted in
/// `unknownOrders`; a C against one prints with side `unknown`.
public final class ITCHNormalizer {
    public static let venue = "XNAS"
    /// The symbol token of feed-wide events (S, W, gaps). It starts with `_`, which no NASDAQ symbol does.
    public static let feedToken = "_FEED"

    public let books: OrderBookSet
    public let clock: EasternClock
    /// Unchecked exclusivity on the hot state: the normalizer runs on its source's thread only.
    @exclusivity(unchecked) public var counts = ITCHCounts()
    let sink: EventSink
    let subjects: SubjectTable
    /// Raw 8-byte symbol by stock locate; 0 while unknown.
    @exclusivity(unchecked) var symbols: [UInt64]
    /// Interned subjects by locate: quote, trade, status, bust. `noSubject` until first needed.
    @exclusivity(unchecked) var subjectIDs: [(quote: SubjectID, trade: SubjectID, status: SubjectID, bust: SubjectID)]
    static let noSubject = SubjectID.max
    let feedStatus: SubjectID
    /// Recent trades by match number, so a B can repeat the price, size and side of the trade it voids. Match
    /// numbers rise through the day, so a direct-mapped table keeps exactly the last `recentTradeSlots` trades
    /// (minutes of a busy session) with no allocation; an older bust carries the match number alone.
    @exclusivity(unchecked) var recentTrades: [(match: UInt64, price: Int64, size: Int64, side: UInt8)]
    static let recentTradeSlots = 1 << 18

    /// The most levels per side `depthLevels` may ask for.
    public static let maxDepthLevels = 64
    /// Depth on request: levels per side published as `MD.XNAS.<SYM>.BOOK` (0: none, the default).
    public var depthLevels = 0 {
        didSet { precondition((0...Self.maxDepthLevels).contains(depthLevels), "depth levels must be 0...\(Self.maxDepthLevels)") }
    }
    /// The depth last published per locate: `depthLevels` bid levels then as many ask levels (empty: not yet).
    @exclusivity(unchecked) var publishedDepth: [[PriceLevel]] = []
    @exclusivity(unchecked) var bookSubjects: [SubjectID] = []
    /// Stale books by locate (empty until a book is first marked), how many, and while set the reason books
    /// learned from now on are marked with.
    @exclusivity(unchecked) var stale: [Bool] = []
    @exclusivity(unchecked) var staleCount = 0
    var staleReason: String? = nil
    var staleSince = Nanos.zero

    public init(sink: EventSink, clock: EasternClock, expectedLiveOrders: Int = 1 << 16) {
        self.sink = sink
        self.subjects = sink.subjects
        self.clock = clock
        books = OrderBookSet(expectedLiveOrders: expectedLiveOrders)
        symbols = [UInt64](repeating: 0, count: 1 << 16)
        let none = ITCHNormalizer.noSubject
        subjectIDs = Array(repeating: (none, none, none, none), count: 1 << 16)
        recentTrades = Array(repeating: (UInt64.max, 0, 0, 0), count: ITCHNormalizer.recentTradeSlots)
        feedStatus = sink.subjects.intern(Subject.marketData(venue: ITCHNormalizer.venue, symbol: ITCHNormalizer.feedToken, kind: .status))
    }

    /// The symbol learned for a stock locate.
    public func symbol(locate: UInt16) -> String? {
        let raw = symbols[Int(locate)]
        return raw == 0 ? nil : ITCHStock(raw: raw).text
    }

    /// Applies one validated message.
    /// - Parameter knownTime: when Tickwire learned it; nil means "at its event time" (file replay).
    @inline(__always)
    public func handle(_ m: ITCHMessage, knownTime: Nanos? = nil) {
        let type = m.typeByte
        counts.byType[Int(type)] &+= 1
        let locate = m.stockLocate
        switch type {
        case 0x41, 0x46: // A, F
            learn(locate, m.stock(24))
            let side: BookSide = m.sideByte == UInt8(ascii: "S") ? .ask : .bid
            if books.add(m.orderReference, locate: locate, side: side, price: m.price, shares: m.shares) {
                quoteIfChanged(locate, m, knownTime)
            } else {
                counts.duplicateOrders &+= 1
            }
        case 0x45: // E
            let shares = m.executedShares
            guard let order = books.reduce(m.orderReference, by: shares) else { counts.unknownOrders &+= 1; return }
            emitTrade(order.locate, price: order.price, shares: UInt64(shares), side: aggressor(order.side),
                      match: m.executionMatchNumber, m, knownTime)
            quoteIfChanged(order.locate, m, knownTime)
        case 0x43: // C
            let shares = m.executedShares
            let printable = m.u8(31) == UInt8(ascii: "Y")
            let order = books.reduce(m.orderReference, by: shares)
            if order == nil { counts.unknownOrders &+= 1 }
            if printable {
                emitTrade(order?.locate ?? locate, price: m.u32(32), shares: UInt64(shares),
                          side: order.map { aggressor($0.side) } ?? .unknown, match: m.executionMatchNumber, m, knownTime)
            } else {
                counts.nonPrintable &+= 1
            }
            if let order { quoteIfChanged(order.locate, m, knownTime) }
        case 0x58: // X
            guard let order = books.reduce(m.orderReference, by: m.executedShares) else { counts.unknownOrders &+= 1; return }
            quoteIfChanged(order.locate, m, knownTime)
        case 0x44: // D
            guard let order = books.delete(m.orderReference) else { counts.unknownOrders &+= 1; return }
            quoteIfChanged(order.locate, m, knownTime)
        case 0x55: // U
            guard let order = books.replace(m.orderReference, with: m.replaceNewReference, shares: m.replaceShares,
                                            price: m.replacePrice) else { counts.unknownOrders &+= 1; return }
            quoteIfChanged(order.locate, m, knownTime)
        case 0x50: // P: a trade against a non-displayed order; the book does not change.
            learn(locate, m.stock(24))
            let resting: UInt8 = m.sideByte == UInt8(ascii: "S") ? BookSide.ask.rawValue : BookSide.bid.rawValue
            emitTrade(locate, price: m.price, shares: UInt64(m.shares), side: aggressor(resting), match: m.u64(36), m, knownTime)
        case 0x51: // Q: the cross. Zero shares means no cross took place: nothing printed, counted.
            learn(locate, m.stock(19))
            if m.u64(11) == 0 { counts.emptyCrosses &+= 1; return }
            emitTrade(locate, price: m.u32(27), shares: m.u64(11), side: .unknown, match: m.u64(31), m, knownTime)
        case 0x42: // B
            let ids = subjects(locate)
            guard ids.bust != ITCHNormalizer.noSubject else { counts.unknownLocate &+= 1; return }
            let t = clock.utc(nanosSinceMidnight: Int64(m.timestamp))
            let match = m.u64(11)
            let recent = recentTrades[Int(truncatingIfNeeded: match) & (ITCHNormalizer.recentTradeSlots - 1)]
            let known = recent.match == match
            sink.emit(Event(subjectID: ids.bust, kind: .bust, flags: known ? recent.side : Side.unknown.rawValue, eventTime: t,
                            knownTime: knownTime ?? t, a: known ? recent.price : 0, b: known ? recent.size : 0,
                            c: Int64(bitPattern: match)))
            counts.busts &+= 1
        case 0x52, 0x49, 0x4E, 0x4A: // R I N J: what a desk watches at the open and the close.
            if let stock = m.carriedStock { learn(locate, stock) }
            deskStatus(type, locate, m, knownTime)
        case 0x4F, 0x4C: // O L: carry a symbol, publish nothing.
            if let stock = m.carriedStock { learn(locate, stock) }
        case 0x53: // S
            emitStatus(feedStatus, Status(category: .system, state: m.u8(11)), m, knownTime)
        case 0x57: // W
            emitStatus(feedStatus, Status(category: .circuitBreaker, state: m.u8(11)), m, knownTime)
        case 0x48, 0x59, 0x4B, 0x68: // H Y K h
            learn(locate, m.stock(11))
            let ids = subjects(locate)
            guard ids.status != ITCHNormalizer.noSubject else { counts.unknownLocate &+= 1; return }
            let status: Status
            switch type {
            case 0x48: status = Status(category: .trading, state: m.u8(19), reason: ascii(m, 21, 4))
            case 0x59: status = Status(category: .shortSale, state: m.u8(19))
            case 0x4B: status = Status(category: .ipo, state: m.u8(23))
            default: status = Status(category: .trading, state: m.u8(20), reason: "OPHALT-" + ascii(m, 19, 1))
            }
            emitStatus(ids.status, status, m, knownTime)
        case 0x56: // V: the day's MWCB levels, feed-wide (8 decimals: already ×1e8).
            let t = clock.utc(nanosSinceMidnight: Int64(m.timestamp))
            sink.emit(.status(feedStatus, .mwcbLevels, state: type, Int64(bitPattern: m.u64(11)), Int64(bitPattern: m.u64(19)),
                              Int64(bitPattern: m.u64(27)), eventTime: t, knownTime: knownTime ?? t))
            counts.statuses &+= 1
        default:
            break
        }
    }

    /// R, I, J and N as STATUS events whose words are numbers (`Status.Category.hasNumbers`; docs/PROTOCOL.md,
    /// "STATUS by category"). Off the hot path: these come a few times a second per symbol at most.
    func deskStatus(_ type: UInt8, _ locate: UInt16, _ m: ITCHMessage, _ knownTime: Nanos?) {
        let ids = subjects(locate)
        guard ids.status != ITCHNormalizer.noSubject else { counts.unknownLocate &+= 1; return }
        let t = clock.utc(nanosSinceMidnight: Int64(m.timestamp)), known = knownTime ?? t
        func price(_ at: Int) -> Int64 { Int64(m.u32(at)) &* 10_000 }
        switch type {
        case 0x52: // R: market category; financial status, round lots only, issue classification, LULD tier; lot; ETP leverage
            let flags = Int64(m.u8(20)) | Int64(m.u8(25)) << 8 | Int64(m.u8(26)) << 16 | Int64(m.u8(32)) << 24
            sink.emit(.status(ids.status, .directory, state: m.u8(19), flags, Int64(m.u32(21)) &* 100_000_000, Int64(m.u32(34)),
                              eventTime: t, knownTime: known))
        case 0x4A: // J: reference, upper and lower collar; the extension number above the state
            sink.emit(.status(ids.status, .luld, state: type, extra: UInt64(m.u32(31)), price(19), price(23), price(27),
                              eventTime: t, knownTime: known))
        case 0x49: // I: paired, imbalance, reference; direction, cross type, variation — then near, far, reference
            let extra = UInt64(m.u8(48)) | UInt64(m.u8(49)) << 8
            sink.emit(.status(ids.status, .imbalance, state: m.u8(27), extra: extra, Int64(bitPattern: m.u64(11)) &* 100_000_000,
                              Int64(bitPattern: m.u64(19)) &* 100_000_000, price(44), eventTime: t, knownTime: known))
            sink.emit(.status(ids.status, .indicative, state: m.u8(48), price(40), price(36), price(44), eventTime: t, knownTime: known))
            counts.statuses &+= 1
        default: // N: the interest flag
            sink.emit(.status(ids.status, .rpii, state: m.u8(19), 0, 0, 0, eventTime: t, knownTime: known))
        }
        counts.statuses &+= 1
    }

    @inline(__always)
    func aggressor(_ restingSide: UInt8) -> Side { restingSide == BookSide.bid.rawValue ? .sell : .buy }

    func ascii(_ m: ITCHMessage, _ at: Int, _ n: Int) -> String {
        String(decoding: (0..<n).map { m.u8(at + $0) }, as: UTF8.self).trimmingCharacters(in: " ")
    }

    @inline(__always)
    func learn(_ locate: UInt16, _ stock: ITCHStock) {
        if symbols[Int(locate)] != stock.raw { relearn(locate, stock) }
    }

    func relearn(_ locate: UInt16, _ stock: ITCHStock) {
        symbols[Int(locate)] = stock.raw
        let none = ITCHNormalizer.noSubject
        subjectIDs[Int(locate)] = (none, none, none, none)
        // While books are stale after a loss, a stock first seen now may have lost messages too.
        if let reason = staleReason { markStale(locate, reason, staleSince) }
    }

    /// The locate's subjects, interned on first use; `noSubject` entries while its symbol is unknown.
    @inline(__always)
    func subjects(_ locate: UInt16) -> (quote: SubjectID, trade: SubjectID, status: SubjectID, bust: SubjectID) {
        let ids = subjectIDs[Int(locate)]
        if ids.quote != ITCHNormalizer.noSubject || symbols[Int(locate)] == 0 { return ids }
        let sym = ITCHStock(raw: symbols[Int(locate)]).text
        func id(_ kind: EventKind) -> SubjectID {
            subjects.intern(text: Subject.marketData(venue: ITCHNormalizer.venue, symbol: sym, kind: kind).text)
        }
        let fresh = (id(.quote), id(.trade), id(.status), id(.bust))
        subjectIDs[Int(locate)] = fresh
        return fresh
    }

    @inline(__always)
    func quoteIfChanged(_ locate: UInt16, _ m: ITCHMessage, _ knownTime: Nanos?) {
        // A stale book publishes nothing: its top is not known to be the market's (issue 13 saw QUOTEs for
        // states the market never had). One load when no book is stale.
        if staleCount > 0 && stale[Int(locate)] { return }
        if depthLevels > 0 { depthIfChanged(locate, m, knownTime) }
        guard let top = books.takeChangedTop(locate) else { return }
        let ids = subjects(locate)
        guard ids.quote != ITCHNormalizer.noSubject else { counts.unknownLocate &+= 1; return }
        let t = clock.utc(nanosSinceMidnight: Int64(m.timestamp))
        sink.emit(Event(subjectID: ids.quote, kind: .quote, eventTime: t, knownTime: knownTime ?? t,
                        a: Int64(top.bid) &* 10_000, b: Int64(top.bidShares) &* 100_000_000,
                        c: Int64(top.ask) &* 10_000, d: Int64(top.askShares) &* 100_000_000))
        counts.quotes &+= 1
    }

    /// Publishes every level of the top `depthLevels` per side that differs from what was last published: one
    /// BOOK event per changed level (price and size; an emptied level has both 0), so a subscriber keeps an
    /// array per side indexed by level. A new level near the top shifts the ones below it, and each shifted
    /// level is published too: level-based depth, as exchanges' market-by-price feeds send it.
    func depthIfChanged(_ locate: UInt16, _ m: ITCHMessage, _ knownTime: Nanos?) {
        let t = clock.utc(nanosSinceMidnight: Int64(m.timestamp))
        depthIfChanged(locate, eventTime: t, knownTime: knownTime ?? t)
    }

    func depthIfChanged(_ locate: UInt16, eventTime t: Nanos, knownTime: Nanos) {
        let n = depthLevels
        if publishedDepth.isEmpty {
            publishedDepth = Array(repeating: [], count: 1 << 16)
            bookSubjects = Array(repeating: ITCHNormalizer.noSubject, count: 1 << 16)
        }
        let i = Int(locate)
        if publishedDepth[i].isEmpty { publishedDepth[i] = Array(repeating: PriceLevel(price: 0, shares: 0), count: 2 * n) }
        if bookSubjects[i] == ITCHNormalizer.noSubject {
            guard symbols[i] != 0 else { return }
            bookSubjects[i] = subjects.intern(text: Subject.marketData(venue: ITCHNormalizer.venue, symbol: ITCHStock(raw: symbols[i]).text, kind: .book).text)
        }
        let book = books.books[i]
        for side in 0..<2 {
            let levels = side == 0 ? book.bids : book.asks   // best last
            for level in 0..<n {
                let now = level < levels.count ? levels[levels.count - 1 - level] : PriceLevel(price: 0, shares: 0)
                if publishedDepth[i][side * n + level] == now { continue }
                publishedDepth[i][side * n + level] = now
                sink.emit(Event(subjectID: bookSubjects[i], kind: .book, flags: side == 0 ? Side.buy.rawValue : Side.sell.rawValue,
                                eventTime: t, knownTime: knownTime,
                                a: Int64(now.price) &* 10_000, b: Int64(now.shares) &* 100_000_000, c: Int64(level), d: Int64(levels.count)))
                counts.books &+= 1
            }
        }
    }

    @inline(__always)
    func emitTrade(_ locate: UInt16, price: UInt32, shares: UInt64, side: Side, match: UInt64, _ m: ITCHMessage, _ knownTime: Nanos?) {
        let ids = subjects(locate)
        guard ids.trade != ITCHNormalizer.noSubject else { counts.unknownLocate &+= 1; return }
        let t = clock.utc(nanosSinceMidnight: Int64(m.timestamp))
        let price = Int64(price) &* 10_000, size = Int64(truncatingIfNeeded: shares) &* 100_000_000
        sink.emit(Event(subjectID: ids.trade, kind: .trade, flags: side.rawValue, eventTime: t, knownTime: knownTime ?? t,
                        a: price, b: size, c: Int64(bitPattern: match)))
        recentTrades[Int(truncatingIfNeeded: match) & (ITCHNormalizer.recentTradeSlots - 1)] = (match, price, size, side.rawValue)
        counts.trades &+= 1
    }

    // MARK: - Stale books and rebuilding from a snapshot

    /// Marks every book whose stock is known stale, publishing a STATUS (`Status.stale(reason)`) for each one not
    /// stale already; until `rebuild`, stocks learned are marked stale as they are learned, and stale books
    /// publish no QUOTE or BOOK. Trades still print.
    /// - Returns: how many books became stale.
    @discardableResult
    public func markAllStale(reason: String, knownTime: Nanos) -> Int {
        if staleReason == nil { staleReason = reason; staleSince = knownTime }
        var n = 0
        for locate in 0..<OrderBookSet.capacity where symbols[locate] != 0 && !isStale(UInt16(locate)) {
            markStale(UInt16(locate), reason, knownTime); n += 1
        }
        return n
    }

    /// Whether a locate's book is stale.
    public func isStale(_ locate: UInt16) -> Bool { staleCount > 0 && stale[Int(locate)] }
    /// Books stale now.
    public var staleBooks: Int { staleCount }

    func markStale(_ locate: UInt16, _ reason: String, _ knownTime: Nanos) {
        if stale.isEmpty { stale = [Bool](repeating: false, count: OrderBookSet.capacity) }
        guard !stale[Int(locate)] else { return }
        stale[Int(locate)] = true
        staleCount += 1
        counts.staleMarks &+= 1
        let ids = subjects(locate)
        guard ids.status != ITCHNormalizer.noSubject else { return }
        sink.emit(.status(ids.status, .stale(reason), eventTime: knownTime, knownTime: knownTime))
        counts.statuses &+= 1
    }

    /// Replaces every book with a snapshot's (`GlimpseSnapshot`): the books are emptied, the snapshot's
    /// messages applied — R and stock-carrying messages teach symbols, A and F rest orders, S and H publish
    /// their STATUS — then each stale book publishes its rebuilt top (a QUOTE, even an empty one) and a STATUS
    /// `Status.rebuilt`, and every other book whose top changed publishes its QUOTE. Events are stamped
    /// `knownTime` for both times: the snapshot is the state at that moment, not at its messages' timestamps.
    ///
    /// A snapshot older than what was delivered since (its sequence behind the stream's) is brought up to date
    /// with `replay`, the messages delivered from its sequence on: they move the books only — their trades were
    /// printed when they came — and an S or H they hold wins over the snapshot's (which is then not published).
    /// - Parameters:
    ///   - snapshot: the snapshot's ITCH messages in BinaryFILE framing (validated).
    ///   - replay: messages delivered after the snapshot's sequence, in order (validated).
    /// - Returns: the books cleared of staleness.
    @discardableResult
    public func rebuild(from snapshot: UnsafeRawBufferPointer, replay: [[UInt8]] = [], knownTime: Nanos) -> Int {
        books.reset()
        staleReason = nil
        var newer = Set<UInt32>()       // (type, locate) of the S and H the replay holds
        for r in replay where r[0] == 0x53 || r[0] == 0x48 { newer.insert(UInt32(r[0]) << 16 | UInt32(r[1]) << 8 | UInt32(r[2])) }
        var reader = BinaryFILEReader(snapshot)
        while let m = try? reader.next() {
            counts.snapshotMessages &+= 1
            let locate = m.stockLocate
            switch m.typeByte {
            case 0x41, 0x46:
                learn(locate, m.stock(24))
                let side: BookSide = m.sideByte == UInt8(ascii: "S") ? .ask : .bid
                if !books.add(m.orderReference, locate: locate, side: side, price: m.price, shares: m.shares) {
                    counts.duplicateOrders &+= 1
                }
            case 0x53, 0x48:
                if newer.contains(UInt32(m.typeByte) << 16 | UInt32(locate)) { if m.typeByte == 0x48 { learn(locate, m.stock(11)) } }
                else { handle(m, knownTime: knownTime) }
            default:
                if let stock = m.carriedStock { learn(locate, stock) }
            }
        }
        for r in replay { r.withUnsafeBytes { moveBooks(ITCHMessage(base: $0.baseAddress!, length: $0.count)) } }
        var cleared = 0
        for i in 0..<OrderBookSet.capacity {
            let locate = UInt16(i)
            let wasStale = isStale(locate)
            if wasStale { stale[i] = false; staleCount -= 1 }
            let top: TopOfBook
            if wasStale { top = books.books[i].top; books.books[i].published = top }
            else if let changed = books.takeChangedTop(locate) { top = changed }
            else { continue }
            let ids = subjects(locate)
            guard ids.quote != ITCHNormalizer.noSubject else { continue }
            if wasStale {
                // Current again first, then what it is: a subscriber never sees a QUOTE while the book is stale.
                sink.emit(.status(ids.status, .rebuilt, eventTime: knownTime, knownTime: knownTime))
                counts.statuses &+= 1
                cleared += 1
            }
            sink.emit(Event(subjectID: ids.quote, kind: .quote, eventTime: knownTime, knownTime: knownTime,
                            a: Int64(top.bid) &* 10_000, b: Int64(top.bidShares) &* 100_000_000,
                            c: Int64(top.ask) &* 10_000, d: Int64(top.askShares) &* 100_000_000))
            counts.quotes &+= 1
            if depthLevels > 0 { depthIfChanged(locate, eventTime: knownTime, knownTime: knownTime) }
        }
        staleCount = 0
        return cleared
    }

    /// What `handle` does to the books and the symbol map, publishing nothing.
    func moveBooks(_ m: ITCHMessage) {
        let locate = m.stockLocate
        switch m.typeByte {
        case 0x41, 0x46:
            learn(locate, m.stock(24))
            _ = books.add(m.orderReference, locate: locate, side: m.sideByte == UInt8(ascii: "S") ? .ask : .bid, price: m.price, shares: m.shares)
        case 0x45, 0x43, 0x58: _ = books.reduce(m.orderReference, by: m.executedShares)
        case 0x44: _ = books.delete(m.orderReference)
        case 0x55: _ = books.replace(m.orderReference, with: m.replaceNewReference, shares: m.replaceShares, price: m.replacePrice)
        default: if let stock = m.carriedStock { learn(locate, stock) }
        }
    }

    func emitStatus(_ subject: SubjectID, _ status: Status, _ m: ITCHMessage, _ knownTime: Nanos?) {
        let t = clock.utc(nanosSinceMidnight: Int64(m.timestamp))
        sink.emit(.status(subject, status, eventTime: t, knownTime: knownTime ?? t))
        counts.statuses &+= 1
    }
}

extension String {
    func trimmingCharacters(in set: Character) -> String {
        var s = Substring(self)
        while s.last == set { s = s.dropLast() }
        while s.first == set { s = s.dropFirst() }
        return String(s)
    }
}
