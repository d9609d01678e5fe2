import TickwireCore

/// A LOBSTER message file (`AAPL_2012-06-21_34200000_57600000_message_10.csv`): rows of time (seconds after
/// midnight, US Eastern, to the nanosecond), event type, order id, size, price (USD × 10000), direction
/// (1 buy, -1 sell). LOBSTER is built from NASDAQ's own feed, so the venue is XNAS.
///
/// The rows drive an order book like ITCH's: 1 submit adds, 2 partial cancel and 4 visible execution reduce,
/// 3 delete removes; a QUOTE is published when the top changes. 4, 5 (hidden execution) and 6 (cross) print a
/// TRADE with the row's price and size, the aggressor side (opposite the resting order's direction; none for a
/// cross) and the file's line number as the trade id (LOBSTER has no match number). 7 (halt) publishes a
/// STATUS: price -1 halted `H`, 0 quotation only `Q`, 1 trading resumed `T`. The symbol and the date come from
/// the file name, the token before the date (the date may be configured instead); the known time is the event time, as for ITCH files.
///
/// An empty file (no row at all) is a `FeedInputError`: a message file always has rows.
public final class LOBSTERSource: EventSource, SkipReporting {
    public let path: String
    public let symbol: String
    public let clock: EasternClock
    public let policy: ErrorPolicy
    public var name: String { "lobster:\(path.split(separator: "/").last.map(String.init) ?? path)" }
    let board = CounterBoard()
    let skipLog = SkipLog()

    /// - Throws: `FeedConfigError` when the name carries no date (and none is configured) or no symbol.
    public init(path: String, options: FeedOptions = FeedOptions()) throws(FeedConfigError) {
        self.path = path
        let base = path.split(separator: "/").last.map(String.init) ?? path
        // The symbol is the token just before the date (`AAPL_2012-06-21_…`, or a prefixed copy `lobster_AAPL_2012-06-21_…`).
        let tokens = base.split(separator: "_")
        let dateIndex = tokens.firstIndex { (try? TradingDate(parsing: String($0))) != nil }
        guard let dateIndex, dateIndex > 0, case let sym = tokens[dateIndex - 1], !sym.isEmpty else {
            throw FeedConfigError("no symbol in LOBSTER file name '\(base)'; expected SYMBOL_YYYY-MM-DD_..._message_N.csv")
        }
        symbol = String(sym)
        guard let date = options.date ?? TradingDate.fromISOInFileName(path) else {
            throw FeedConfigError("no trading date in '\(base)': name it SYMBOL_YYYY-MM-DD_..., or \(FeedOptions.howToSetDate)")
        }
        clock = EasternClock(date: date)
        policy = options.errorPolicy
    }

    public func counters() -> [(name: String, value: UInt64)] { board.snapshot() }
    public var skipSummary: String? { skipLog.summary }
    /// It reads a mapped file and never waits: the daemon's sink may collect its events and publish them in
    /// batches (one claim each); the daemon flushes once more when `run` returns.
    public var flushesSink: Bool { true }

    public func run(into sink: EventSink, stop: StopSignal) throws {
        let file = try MappedFile(path: path)
        var counts = CSVCounts()
        defer { board.publish(counts.pairs()) }
        let book = OrderBookSet(expectedLiveOrders: 1 << 12)
        let id = { (kind: EventKind) in sink.subjects.intern(Subject.marketData(venue: ITCHNormalizer.venue, symbol: self.symbol, kind: kind)) }
        let quoteID = id(.quote), tradeID = id(.trade), statusID = id(.status)
        var failure: CSVError?, firstSkipped: CSVError?
        defer { skipLog.set(csvSkipSummary(name, counts, first: firstSkipped)) }
        CSVRows(path: path, file: file).forEach { line, f in
            counts.rows += 1
            let r = CSVField(path: path, line: line)
            do throws(CSVError) {
                guard f.count >= 6 else { throw r.fail("direction", "the row has \(f.count) fields; 6 were expected") }
                let t = clock.utc(nanosSinceMidnight: try LOBSTERSource.nanos(f[0], r))
                let type = try r.int(f[1], "event type")
                let order = try r.int(f[2], "order id")
                let size = try r.int(f[3], "size")
                let price = try r.int(f[4], "price")
                let direction = try r.int(f[5], "direction")
                guard direction == 1 || direction == -1 else { throw r.fail("direction", "\(direction) is neither 1 (buy) nor -1 (sell)") }
                guard (1...7).contains(type) else { throw r.fail("event type", "\(type) is not 1-7") }
                if type != 7 {
                    guard size >= 0, size <= Int64(UInt32.max) else { throw r.fail("size", "\(size) is out of range") }
                    guard price >= 0, price <= Int64(UInt32.max) else { throw r.fail("price", "\(price) is out of range") }
                    guard order >= 0 else { throw r.fail("order id", "\(order) is negative") }
                }
                let side: BookSide = direction == 1 ? .bid : .ask
                var changed = true
                switch type {
                case 1:
                    changed = book.add(UInt64(order), locate: 0, side: side, price: UInt32(price), shares: UInt32(size))
                case 2, 4:
                    if book.reduce(UInt64(order), by: UInt32(size)) == nil { counts.unknownOrders += 1; changed = false }
                case 3:
                    if book.delete(UInt64(order)) == nil { counts.unknownOrders += 1; changed = false }
                default:
                    changed = false
                }
                if type == 4 || type == 5 || type == 6 {
                    sink.emit(.trade(tradeID, price: Price(units: price, decimals: 4), size: Quantity(units: size, decimals: 0),
                                     side: type == 6 ? .unknown : (direction == 1 ? .sell : .buy), tradeID: UInt64(line),
                                     eventTime: t, knownTime: t))
                    counts.events += 1
                }
                if type == 7 {
                    let state: UInt8 = price < 0 ? UInt8(ascii: "H") : price == 0 ? UInt8(ascii: "Q") : UInt8(ascii: "T")
                    sink.emit(.status(statusID, Status(category: .trading, state: state), eventTime: t, knownTime: t))
                    counts.events += 1
                }
                if changed, let top = book.takeChangedTop(0) {
                    let q = top.quote
                    sink.emit(.quote(quoteID, bid: q.bid, bidSize: q.bidSize, ask: q.ask, askSize: q.askSize, eventTime: t, knownTime: t))
                    counts.events += 1
                }
            } catch {
                counts.errors += 1
                if policy == .stop { failure = error; return false }
                if firstSkipped == nil { firstSkipped = error }
            }
            if counts.rows & 0xFFF == 0 { board.publish(counts.pairs()); if stop.isRaised { return false } }
            return true
        }
        if let failure { throw failure }
        if counts.rows == 0 && !stop.isRaised { throw FeedInputError("no LOBSTER rows in '\(path)': the file is empty") }
    }

    /// `34200.004241176` seconds → nanoseconds, exactly (at most 9 fractional digits).
    static func nanos(_ v: Substring, _ r: CSVField) throws(CSVError) -> Int64 {
        let parts = v.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
        guard let secs = Int64(parts[0]), secs >= 0, secs < 86_400 * 2 else {
            throw r.fail("time", "'\(v)' is not seconds after midnight")
        }
        var frac: Int64 = 0
        if parts.count == 2 {
            let f = parts[1]
            guard !f.isEmpty, f.count <= 9, f.allSatisfy({ $0.isASCII && $0.isNumber }), let n = Int64(f) else {
                throw r.fail("time", "'\(v)': the fraction must be 1 to 9 digits")
            }
            frac = n
            for _ in f.count..<9 { frac *= 10 }
        }
        return secs * Nanos.perSecond + frac
    }
}
