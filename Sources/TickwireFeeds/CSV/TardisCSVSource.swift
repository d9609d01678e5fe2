import TickwireCore

/// A tardis.dev CSV capture: trades (`exchange,symbol,timestamp,local_timestamp,id,side,price,amount`) or
/// quotes (`exchange,symbol,timestamp,local_timestamp,ask_amount,ask_price,bid_price,bid_amount`).
///
/// `timestamp` (the exchange's time) becomes the event time and `local_timestamp` (when the capture learned
/// it) the known time, both microseconds → nanoseconds exactly. Subjects are
/// `MD.<EXCHANGE uppercased, sanitized>.<SYMBOL>.TRADE|QUOTE`, e.g. `MD.BINANCE-FUTURES.BTCUSDT.TRADE`.
/// A trade id that is not a decimal integer is hashed (FNV-1a, 64 bits) so the id stays stable; an empty one is
/// 0, "no id" (every such fill is its own row in the store, never a correction of another). An empty quote
/// side (no bid or no ask) is published as price 0, size 0.
/// Sizes (`amount`, `ask_amount`, `bid_amount`) must not be negative; a row with one is refused naming line and
/// field (and counted and skipped under `on_error = "skip"`).
public final class TardisCSVSource: EventSource, SkipReporting {
    public enum Kind: String, Sendable { case trades, quotes }

    public let path: String
    public let kind: Kind
    public let policy: ErrorPolicy
    public var name: String { "tardis-\(kind.rawValue):\(path.split(separator: "/").last.map(String.init) ?? path)" }
    let board = CounterBoard()
    let skipLog = SkipLog()

    static let tradeColumns = ["exchange", "symbol", "timestamp", "local_timestamp", "id", "side", "price", "amount"]
    static let quoteColumns = ["exchange", "symbol", "timestamp", "local_timestamp", "ask_amount", "ask_price", "bid_price", "bid_amount"]

    public init(path: String, kind: Kind, options: FeedOptions = FeedOptions()) {
        self.path = path; self.kind = kind; self.policy = options.errorPolicy
    }

    public func counters() -> [(name: String, value: UInt64)] { board.snapshot() }
    public var skipSummary: String? { skipLog.summary }

    public func run(into sink: EventSink, stop: StopSignal) throws {
        let file = try MappedFile(path: path)
        var counts = CSVCounts()
        defer { board.publish(counts.pairs()) }
        var subjectCache: [String: SubjectID] = [:]
        var columns: [Int]? = nil
        let wanted = kind == .trades ? TardisCSVSource.tradeColumns : TardisCSVSource.quoteColumns
        var failure: CSVError?, firstSkipped: CSVError?
        defer { skipLog.set(csvSkipSummary(name, counts, first: firstSkipped)) }
        CSVRows(path: path, file: file).forEach { line, fields in
            guard let col = columns else {
                // The header: find each column by name, in any order.
                var found = [Int]()
                for w in wanted {
                    guard let i = fields.firstIndex(where: { $0 == w }) else {
                        failure = CSVError(path: path, line: line, field: w,
                                           reason: "the header has no '\(w)' column; a tardis \(kind.rawValue) file has \(wanted.joined(separator: ","))")
                        return false
                    }
                    found.append(i)
                }
                columns = found
                return true
            }
            counts.rows += 1
            do throws(CSVError) {
                let event = try self.event(fields, col, CSVField(path: path, line: line), sink, &subjectCache)
                sink.emit(event)
                counts.events += 1
            } catch {
                counts.errors += 1
                if policy == .stop { failure = error; return false }
                if firstSkipped == nil { firstSkipped = error }
            }
            if counts.rows & 0xFFF == 0 { board.publish(counts.pairs()); if stop.isRaised { return false } }
            return true
        }
        if let failure { throw failure }
        if columns == nil { throw CSVError(path: path, line: 1, field: "header", reason: "the file is empty; a header line was expected") }
    }

    func event(_ f: [Substring], _ col: [Int], _ r: CSVField, _ sink: EventSink,
               _ cache: inout [String: SubjectID]) throws(CSVError) -> Event {
        guard f.count > col.max()! else {
            throw r.fail(TardisCSVSource.tradeColumns[0], "the row has \(f.count) fields; the header has at least \(col.max()! + 1)")
        }
        let names = kind == .trades ? TardisCSVSource.tradeColumns : TardisCSVSource.quoteColumns
        let exchange = f[col[0]], symbol = f[col[1]]
        if exchange.isEmpty { throw r.fail("exchange", "it is empty") }
        if symbol.isEmpty { throw r.fail("symbol", "it is empty") }
        let eventTime = try r.micros(f[col[2]], "timestamp")
        let knownTime = try r.micros(f[col[3]], "local_timestamp")
        let key = "\(exchange)\u{0}\(symbol)"
        let subject: SubjectID
        if let s = cache[key] { subject = s } else {
            subject = sink.subjects.intern(Subject.marketData(venue: exchange.uppercased(), symbol: String(symbol),
                                                              kind: kind == .trades ? .trade : .quote))
            cache[key] = subject
        }
        switch kind {
        case .trades:
            let idText = f[col[4]]
            // No id: 0, which the store never takes for a correction key, so distinct fills at one instant stay
            // distinct (a hash of "" would have made every id-less fill there a correction of the one before).
            let id = idText.isEmpty ? 0 : UInt64(idText) ?? TardisCSVSource.fnv1a(idText)
            let side: Side
            switch f[col[5]] {
            case "buy": side = .buy
            case "sell": side = .sell
            case "unknown", "": side = .unknown
            default: throw r.fail(names[5], "'\(f[col[5]])' is not buy, sell or unknown")
            }
            let price = try r.decimal(f[col[6]], names[6]), amount = try r.nonNegativeDecimal(f[col[7]], names[7])
            return .trade(subject, price: Price(e8: price), size: Quantity(e8: amount), side: side, tradeID: id,
                          eventTime: eventTime, knownTime: knownTime)
        case .quotes:
            let askSize = try r.nonNegativeDecimal(f[col[4]], names[4], emptyAs: 0), ask = try r.decimal(f[col[5]], names[5], emptyAs: 0)
            let bid = try r.decimal(f[col[6]], names[6], emptyAs: 0), bidSize = try r.nonNegativeDecimal(f[col[7]], names[7], emptyAs: 0)
            return .quote(subject, bid: Price(e8: bid), bidSize: Quantity(e8: bidSize), ask: Price(e8: ask),
                          askSize: Quantity(e8: askSize), eventTime: eventTime, knownTime: knownTime)
        }
    }

    static func fnv1a(_ s: Substring) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in s.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        return h
    }
}
